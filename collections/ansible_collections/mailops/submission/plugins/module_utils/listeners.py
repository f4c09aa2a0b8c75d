# Copyright: smtp-submission developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a submission listener is called, and which chain files serve a name.

One rule, read by the roles (as filters), the testinfra suite and the scripts:
a listener greets and presents certificates as its ``hostname``, which
defaults to ``<name>.<domain>``.
"""

from __future__ import annotations


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


def chain_files(names, chain_dir, key_types):
    """Host name -> its chain files, one per key type, as submission_tls installs them."""
    return {name: [f"{chain_dir.rstrip('/')}/{name}.{key_type}.pem" for key_type in key_types] for name in names}
