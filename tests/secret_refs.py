"""Passwords kept off command lines (Python 3 stdlib only; runs on both sides).

A host's command lines are readable by every local user (/proc/*/cmdline) and
logged by sudo and Ansible. So the verification accounts' passwords reach the
host under test once, in a 0600 file (HostSecrets in host_probe.py), and the
sessions the tests send carry references to them: a string that contains an
account's password becomes {"secret_of": login, "around": [before, after]}
(a wrong password made from a right one included).
"""

import json
import os

SECRETS_ENV = "SUBMISSION_VERIFY_SECRETS"


def conceal(value, secrets):
    """value with every string that contains one of secrets' passwords replaced by a reference."""
    if isinstance(value, dict):
        return {key: conceal(item, secrets) for key, item in value.items()}
    if isinstance(value, list):
        return [conceal(item, secrets) for item in value]
    if isinstance(value, str):
        # Longest first, so that a password containing another is matched whole.
        for login, password in sorted(secrets.items(), key=lambda pair: -len(pair[1])):
            if password and password in value:
                return {"secret_of": login, "around": value.split(password)}
    return value


def reveal(value, secrets=None):
    """value with its references replaced by the passwords in the file named by $SUBMISSION_VERIFY_SECRETS."""
    if secrets is None:
        path = os.environ.get(SECRETS_ENV)
        secrets = {}
        if path:
            with open(path, encoding="utf-8") as handle:
                secrets = json.load(handle)
    if isinstance(value, dict):
        if set(value) == {"secret_of", "around"}:
            return secrets[value["secret_of"]].join(value["around"])
        return {key: reveal(item, secrets) for key, item in value.items()}
    if isinstance(value, list):
        return [reveal(item, secrets) for item in value]
    return value
