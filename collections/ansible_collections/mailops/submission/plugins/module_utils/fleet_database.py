# Copyright: smtp-submission developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How an MTA of the fleet reaches the fleet database: the settings, checked,
and the connection strings each client reads.

Every client verifies the server's certificate against the fleet's CA and the
server's name (``sslmode=verify-full``), gives up connecting after a few
seconds (a database outage is a 4xx, soon), and reads its password from a
passfile (libpq's .pgpass format), so that no connection string, and no log
line that quotes one, holds a password.

Pure Python, no Ansible import.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import quote

from ansible_collections.mailops.submission.plugins.module_utils.dns_name import DnsNameError, dns_name

DEFAULTS = {
    "port": 5432,
    "name": "submission",
    "ca_file": "/etc/ssl/submission/fleet-database-ca.pem",
    "connect_timeout": 5,
    # The fleet's shared counter store (Redis over TLS, the per-login limits) on the same host.
    "counter_port": 6380,
}
_IDENTIFIER_RE = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def ip_address(value):
    """An IPv4 or IPv6 address in its canonical text (as a certificate's IP
    name and libpq compare it), or None for anything else."""
    if not isinstance(value, str):
        return None
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


def database_host(value):
    """The database host as clients name it and its certificate holds it: an IP
    address (canonical text) or a DNS name of one label or more (canonical)."""
    address = ip_address(value)
    if address is not None:
        return address
    try:
        return dns_name(value, single_label=True)
    except DnsNameError as exc:
        raise ValueError(
            f"submission_fleet_database.host: {value!r} is neither an IP address nor a host name: it {exc.reason}"
        ) from None


def fleet_database_settings(settings):
    """The fleet database's settings with their defaults; an empty mapping (no fleet) stays empty.

    host: the name the MTAs connect to (the server certificate's name), a DNS
    name of one label or more, given back in its canonical form (lower case,
    A-labels);
    inventory_host: the database host in the inventory, from which the CA
    certificate is read; port, name, ca_file, connect_timeout.
    """
    if not settings:
        return {}
    if not isinstance(settings, dict):
        raise ValueError(f"submission_fleet_database must be a mapping, not {settings!r}")
    unknown = sorted(set(settings) - set(DEFAULTS) - {"host", "inventory_host"})
    if unknown:
        raise ValueError(f"submission_fleet_database: unknown keys {unknown}")
    merged = dict(DEFAULTS, **settings)
    merged["host"] = database_host(merged.get("host"))
    if not isinstance(merged.get("inventory_host"), str) or not merged["inventory_host"]:
        raise ValueError("submission_fleet_database.inventory_host: the database host's name in the inventory")
    if not _IDENTIFIER_RE.fullmatch(str(merged["name"])):
        raise ValueError(f"submission_fleet_database.name: {merged['name']!r} is not a plain database name")
    for key in ("port", "connect_timeout", "counter_port"):
        if not isinstance(merged[key], int) or isinstance(merged[key], bool) or not 0 < merged[key] < 65536:
            raise ValueError(f"submission_fleet_database.{key}: {merged[key]!r} is not a positive number")
    return merged


def fleet_parameters(settings, user, passfile):
    """libpq's connection parameters for user, as a mapping (Dovecot 2.4's pgsql parameters)."""
    settings = fleet_database_settings(settings)
    parts = {
        "host": settings["host"],
        "port": settings["port"],
        "dbname": settings["name"],
        "user": user,
        "sslmode": "verify-full",
        "sslrootcert": settings["ca_file"],
        "connect_timeout": settings["connect_timeout"],
    }
    if passfile:
        parts["passfile"] = passfile
    return parts


def fleet_conninfo(settings, user, passfile, password=None):
    """A libpq key=value connection string for user (psycopg, Dovecot 2.3): with a
    passfile, or (for Dovecot, which reads its file as root) the password itself."""
    parts = fleet_parameters(settings, user, passfile)
    if password is not None:
        _check_password(user, password)
        parts["password"] = "'" + password.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return " ".join(f"{key}={value}" for key, value in parts.items())


def _check_password(user, password):
    if not isinstance(password, str) or len(password) < 16:
        raise ValueError(f"the database password of {user} must be a string of at least 16 characters")


def fleet_uri(settings, user, passfile):
    """A postgresql:// connection URI for user (Postfix's pgsql_table hosts)."""
    settings = fleet_database_settings(settings)
    query = (
        f"sslmode=verify-full&sslrootcert={quote(settings['ca_file'])}"
        f"&connect_timeout={settings['connect_timeout']}&passfile={quote(passfile)}"
    )
    return f"postgresql://{user}@{settings['host']}:{settings['port']}/{settings['name']}?{query}"


def fleet_counter_store(settings, user, password_file, cert_file, key_file):
    """The limits file's ``store`` for an MTA of the fleet: the database host's
    Redis over TLS (its certificate checked against the fleet's CA and the
    host's name; the MTA's client certificate from that CA), as user, with the
    password in password_file."""
    settings = fleet_database_settings(settings)
    return {
        "host": settings["host"],
        "port": settings["counter_port"],
        "ca_file": settings["ca_file"],
        "cert_file": cert_file,
        "key_file": key_file,
        "user": user,
        "password_file": password_file,
    }


def pgpass_line(settings, user, password):
    """The passfile line for user (libpq escapes ':' and '\\' with a backslash)."""
    settings = fleet_database_settings(settings)
    _check_password(user, password)

    def escaped(value):
        return str(value).replace("\\", "\\\\").replace(":", "\\:")

    fields = (settings["host"], settings["port"], settings["name"], user, password)
    return ":".join(escaped(field) for field in fields) + "\n"
