"""The verification passwords never travel on the host's command lines, which
every local user can read in /proc/*/cmdline and sudo and Ansible log."""

import base64
import binascii
import re

from host_probe import authenticated


def readable(command):
    """command, and what its base64 arguments decode to (as anyone reading it could)."""
    decoded = []
    for token in re.findall(r"[A-Za-z0-9+/=]{16,}", command):
        try:
            decoded.append(base64.b64decode(token).decode("utf-8", "replace"))
        except (binascii.Error, ValueError):
            continue
    return "\n".join([command, *decoded])


def test_a_probe_logs_in_with_no_password_on_its_command_line(host, probe, deployment, host_secrets):
    account = deployment.accounts[0]
    commands = []
    run = host.run

    def recording_run(command, *args, **kwargs):
        commands.append(command % tuple(args) if args else command)
        return run(command, *args, **kwargs)

    host.run = recording_run
    try:
        result = probe.one(authenticated(deployment.endpoints[0], account, deployment.recipient))
    finally:
        del host.run
    assert result.get("auth", [0])[0] == 235, f"the login by reference failed: {result}"
    assert commands and all(account.password not in readable(c) for c in commands), "a password on a command line"

    secrets_file = host.file(host_secrets.path)
    assert secrets_file.mode == 0o600, f"{host_secrets.path} is {secrets_file.mode:o}"
    assert secrets_file.user == host.user().name
