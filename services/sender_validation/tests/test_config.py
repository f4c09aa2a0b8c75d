"""The deployed configuration file, and the migrate command the role runs."""

import json
import os
import pathlib
import re
import socket
import subprocess
import sys

import pytest
from ansible_collections.mailops.submission.plugins.module_utils.socketmap_protocol import netstring
from sender_validation.config import ConfigError, dmarc_settings, load, service_settings
from sender_validation.dmarc import DmarcSettings

PACKAGE_ROOT = pathlib.Path(__file__).resolve().parents[1]
# The service as a host runs it: its package and the shared library (the
# collection's module_utils, under its collection name).
SERVICE_PATH = os.pathsep.join(str(p) for p in (PACKAGE_ROOT, PACKAGE_ROOT.parents[1] / "collections"))
# python3-systemd's listen_fds, for the daemon's socket activation (fake_systemd/systemd/__init__.py).
FAKE_SYSTEMD = pathlib.Path(__file__).resolve().parent / "fake_systemd"
LISTENERS = [{"hostname": "smtp.runbox.com", "ports": [25, 26, 587], "tls": "starttls"}]


def write_config(tmp_path, **overrides):
    key = tmp_path / "secret_key"
    key.write_text("s" * 40)
    config = {
        "store": str(tmp_path / "senders.sqlite"),
        "auth_socket": "/run/sender-validation/auth-client",
        "base_url": "https://senders.runbox.com",
        "primary_domain": "runbox.com",
        "hosted_domains": ["runbox.com", "Hosted.Example"],
        "no_reply": "no-reply@runbox.com",
        "service_name": "Runbox",
        "secret_key_file": str(key),
        "listeners": LISTENERS,
        "limits": {"login_per_hour": 5},
    }
    config.update(overrides)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return path


def test_a_good_file_gives_the_settings(tmp_path):
    config = load(write_config(tmp_path))
    settings = service_settings(config)
    assert config["secret_key"] == "s" * 40
    assert settings.hosted_domains == {"runbox.com", "hosted.example"}
    assert (settings.limits.login_per_hour, settings.limits.login_per_day) == (5, 10)
    assert settings.mail.valid_hours == 24


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"store": None}, "store must be a str"),
        ({"listeners": "smtp"}, "listeners must be a list"),
        ({"limits": {"per_minute": 1}}, "unknown limits ['per_minute']"),
    ],
)
def test_a_bad_file_names_the_bad_key(tmp_path, override, message):
    with pytest.raises(ConfigError) as caught:
        load(write_config(tmp_path, **override))
    assert message in str(caught.value)


def test_migrate_creates_the_schema_once(tmp_path):
    path = write_config(tmp_path)
    command = [sys.executable, "-m", "sender_validation", "migrate", str(path)]
    env = dict(os.environ, PYTHONPATH=SERVICE_PATH)
    first = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    assert first.returncode == 0 and "applied [1, 2]" in first.stdout, first.stderr
    again = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    assert again.returncode == 0 and "applied none" in again.stdout, again.stderr


def test_the_wsgi_app_starts_from_the_file_and_serves_the_login_page(tmp_path):
    path = write_config(tmp_path)
    env = dict(os.environ, PYTHONPATH=SERVICE_PATH, SENDER_VALIDATION_CONFIG=str(path))
    probe = "from sender_validation.wsgi import app; print(app.test_client().get('/login').status_code)"
    served = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=False, env=env)
    assert served.stdout.strip() == "200", served.stderr


def test_the_sender_map_serves_on_the_socket_systemd_passes(tmp_path):
    """As sender-validation-map.socket starts it: the listening socket as fd 3,
    LISTEN_PID and LISTEN_FDS=1 (sd_listen_fds(3))."""
    path = write_config(tmp_path)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([SERVICE_PATH, str(FAKE_SYSTEMD)]))
    subprocess.run([sys.executable, "-m", "sender_validation", "migrate", str(path)], check=True, env=env)
    listening = socket.socket(socket.AF_UNIX)
    listening.bind(str(tmp_path / "map.sock"))
    listening.listen()
    # A launcher does what systemd does before it executes the service: the
    # socket on fd 3, and LISTEN_PID the pid that exec keeps.
    launcher = (
        "import os, sys; os.dup2(int(sys.argv[1]), 3); os.environ['LISTEN_PID'] = str(os.getpid()); "
        "os.environ['LISTEN_FDS'] = '1'; os.execv(sys.executable, [sys.executable, *sys.argv[2:]])"
    )
    command = [sys.executable, "-c", launcher, str(listening.fileno()), "-m", "sender_validation", "sender-map"]
    daemon = subprocess.Popen([*command, str(path)], env=env, pass_fds=[listening.fileno()])
    try:
        with socket.socket(socket.AF_UNIX) as client:
            client.settimeout(10)
            client.connect(str(tmp_path / "map.sock"))
            client.sendall(netstring(b"senders someone@gmail.example"))
            assert client.recv(100) == b"9:NOTFOUND ,"
    finally:
        daemon.terminate()
        daemon.wait(timeout=10)
        listening.close()


def test_the_sender_map_without_a_socket_says_so(tmp_path):
    path = write_config(tmp_path)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([SERVICE_PATH, str(FAKE_SYSTEMD)]))
    command = [sys.executable, "-m", "sender_validation", "sender-map", str(path)]
    started = subprocess.run(command, capture_output=True, text=True, check=False, env=env, timeout=30)
    assert started.returncode == 1 and "no socket" in started.stderr, started.stderr


def test_end_sessions_logs_a_login_out_everywhere_and_names_a_bad_login(tmp_path):
    path = write_config(tmp_path)
    env = dict(os.environ, PYTHONPATH=SERVICE_PATH)
    subprocess.run([sys.executable, "-m", "sender_validation", "migrate", str(path)], check=True, env=env)
    from sender_validation.store import Store  # noqa: PLC0415

    store = Store(str(tmp_path / "senders.sqlite"))
    alice = [store.open_session("alice@runbox.com", now=2_000_000_000, ttl=3600) for _ in range(2)]
    bob = store.open_session("bob@hosted.example", now=2_000_000_000, ttl=3600)
    command = [sys.executable, "-m", "sender_validation", "end-sessions"]
    ended = subprocess.run(
        [*command, "Alice@RunBox.com", str(path)], check=False, capture_output=True, text=True, env=env
    )
    assert ended.returncode == 0 and "alice@runbox.com: 2 web session(s) ended" in ended.stdout, ended.stderr
    assert [store.session_login(s, now=2_000_000_001) for s in alice] == [None, None]
    assert store.session_login(bob, now=2_000_000_001) == "bob@hosted.example"
    bad = subprocess.run([*command, "alice bob", str(path)], check=False, capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and "'alice bob'" in bad.stderr
    store.close()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"timeout": "2"}, "dmarc.timeout has the wrong type: '2'"),
        ({"timeout": 0}, "dmarc.timeout must be seconds above 0, at most 10: 0"),
        ({"timeout": float("inf")}, "at most 10: inf"),
        ({"nameservers": ["bogus"]}, "dmarc.nameservers: 'bogus' is not an IP address"),
        ({"refuse": 1}, "dmarc.refuse has the wrong type: 1"),
        ({"resolver": "x"}, "dmarc must be a mapping of"),
    ],
)
def test_bad_dmarc_settings_are_named(value, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        dmarc_settings(value)


def test_dmarc_settings():
    assert dmarc_settings({"timeout": 1, "refuse": True}) == DmarcSettings(timeout=1.0, refuse=True)
