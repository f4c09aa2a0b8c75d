# Copyright: smtp-submission developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a submission listener is called, and which chain files serve a name.

One rule, read by the roles (as filters), the testinfra suite and the scripts:
a listener greets and presents certificates as its ``hostname``, which
defaults to ``<name>.<domain>``.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter

LISTENER_NAME_RE = re.compile(r"[a-z0-9][a-z0-9-]*")


def listener_hostname(listener, domain):
    """The name a listener greets with and presents certificates for."""
    return listener.get("hostname") or f"{listener['name']}.{domain}"


def listener_hostnames(listeners, domain):
    """Every listener's host name, once each, in the order of the listeners."""
    names = []
    for listener in listeners:
        name = listener_hostname(listener, domain)
        if name not in names:
            names.append(name)
    return names


def listener_hostname_map(listeners, domain):
    """Listener name -> its host name."""
    return {listener["name"]: listener_hostname(listener, domain) for listener in listeners}


def served_listeners(listeners, domain):
    """What a mail client needs of each listener: host name, STARTTLS ports,
    implicit-TLS ports and whether TLS is required (the validation service's
    settings page shows these)."""
    return [
        {
            "hostname": listener_hostname(listener, domain),
            "ports": [int(port) for port in listener.get("ports", [])],
            "implicit_tls_ports": [int(port) for port in listener.get("implicit_tls_ports", [])],
            "tls": listener.get("tls", "starttls"),
        }
        for listener in listeners
    ]


def chain_files(names, chain_dir, key_types):
    """Host name -> its chain files, one per key type, as submission_tls installs them."""
    return {name: [f"{chain_dir.rstrip('/')}/{name}.{key_type}.pem" for key_type in key_types] for name in names}


def listener_problems(listeners):
    """One line per problem with the listeners, each naming the listener and the
    value: what the argument spec cannot say (a name fit for a service, an IP
    address, ports in range, no address and port bound twice)."""
    if not listeners:
        return ["no listener: submission_common_listeners must hold at least one"]
    problems, bindings = [], []
    for position, listener in enumerate(listeners, start=1):
        name = listener.get("name")
        label = f"listener {name!r}" if name else f"listener #{position}"
        if not isinstance(name, str) or not LISTENER_NAME_RE.fullmatch(name):
            problems.append(f"{label}: the name must be lower-case letters, digits and '-'")
        address = str(listener.get("address", ""))
        try:
            ipaddress.ip_address(address)
        except ValueError:
            problems.append(f"{label}: address {address!r} is not an IP address")
        ports = list(listener.get("ports") or [])
        if not ports:
            problems.append(f"{label}: no ports")
        for port in ports + list(listener.get("implicit_tls_ports") or []):
            number = int(port) if isinstance(port, int | str) and str(port).isdigit() else 0
            if not 1 <= number <= 65535:
                problems.append(f"{label}: port {port!r} is not in 1-65535")
            bindings.append(f"{address}:{number or port}")
    problems += [f"{binding} is bound by two listeners" for binding, n in Counter(bindings).items() if n > 1]
    return problems
