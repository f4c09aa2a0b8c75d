"""The deployed configuration: one JSON file the role writes, read once at start.

Keys: store (the SQLite file, or in fleet mode the database's libpq
connection string, whose password is in a passfile), auth_socket (Dovecot's auth-client socket for
this service), base_url, primary_domain, hosted_domains, no_reply,
service_name, secret_key_file, listeners (host name, ports,
implicit_tls_ports, tls), and optionally token_ttl, block_for, session_ttl
(how long a web login lasts, 8 hours by default), limits
(login_per_hour, login_per_day, sender_interval, sender_per_day,
pending_per_login) and dmarc (timeout, refuse, nameservers, port: the DMARC
policy of an address's domain, read when it is added). A missing or mistyped key fails at start, naming it.
"""

from __future__ import annotations

import ipaddress
import json

from sender_validation.confirmation_mail import MailSettings
from sender_validation.dmarc import DmarcSettings
from sender_validation.limits import DAY, Limits
from sender_validation.service import Settings

REQUIRED = {
    "store": str,
    "auth_socket": str,
    "base_url": str,
    "primary_domain": str,
    "hosted_domains": list,
    "no_reply": str,
    "service_name": str,
    "secret_key_file": str,
    "listeners": list,
}


class ConfigError(ValueError):
    pass


def load(path):
    """The configuration as a dict, with secret_key read from its file."""
    try:
        with open(path, encoding="utf-8") as handle:
            config = json.load(handle)
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    for key, kind in REQUIRED.items():
        if not isinstance(config.get(key), kind):
            raise ConfigError(f"{path}: {key} must be a {kind.__name__}, not {config.get(key)!r}")
    unknown = set(config.get("limits", {})) - set(Limits.__dataclass_fields__)
    if unknown:
        raise ConfigError(f"{path}: unknown limits {sorted(unknown)}")
    with open(config["secret_key_file"], encoding="ascii") as handle:
        config["secret_key"] = handle.read().strip()
    if len(config["secret_key"]) < 32:
        raise ConfigError(f"{config['secret_key_file']}: the secret key must be at least 32 characters")
    return config


def service_settings(config):
    return Settings(
        base_url=config["base_url"],
        hosted_domains=frozenset(domain.lower() for domain in config["hosted_domains"]),
        mail=MailSettings(
            no_reply=config["no_reply"],
            service_name=config["service_name"],
            valid_hours=config.get("token_ttl", DAY) // 3600,
        ),
        limits=Limits(**config.get("limits", {})),
        token_ttl=config.get("token_ttl", DAY),
        block_for=config.get("block_for", 30 * DAY),
        session_ttl=config.get("session_ttl", 8 * 3600),
        dmarc=dmarc_settings(config.get("dmarc", {})),
    )


# A web thread waits at most this long for a DMARC answer.
MAX_DMARC_TIMEOUT = 10


def dmarc_settings(value):
    """dmarc: {check (bool), timeout (seconds), refuse (bool), nameservers, port}; ConfigError naming a bad value."""
    kinds = {"check": bool, "timeout": (int, float), "refuse": bool, "nameservers": list, "port": int}
    if not isinstance(value, dict) or set(value) - set(kinds):
        raise ConfigError(f"dmarc must be a mapping of {sorted(kinds)}: {value!r}")
    for key, kind in kinds.items():
        if key in value and (not isinstance(value[key], kind) or isinstance(value[key], bool) != (kind is bool)):
            raise ConfigError(f"dmarc.{key} has the wrong type: {value[key]!r}")
    if not 0 < value.get("timeout", 2) <= MAX_DMARC_TIMEOUT:
        raise ConfigError(f"dmarc.timeout must be seconds above 0, at most {MAX_DMARC_TIMEOUT}: {value['timeout']!r}")
    for address in value.get("nameservers", []):
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise ConfigError(f"dmarc.nameservers: {address!r} is not an IP address") from None
    return DmarcSettings(
        check=value.get("check", True),
        timeout=float(value.get("timeout", 2)),
        refuse=value.get("refuse", False),
        nameservers=tuple(value.get("nameservers", ())),
        port=value.get("port", 53),
    )
