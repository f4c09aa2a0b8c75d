# Copyright: smtp-submission developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Client networks that an abuse control may exempt.

An exemption is for a known gateway (an office, a carrier-grade NAT, a
monitoring host): a network so wide that it holds much of the Internet
(0.0.0.0/0, ::/0 or anything wider than the limits below) would switch the
controls off for every attacker too.
"""

from __future__ import annotations

import ipaddress

# The widest network an exemption may name: a /8 of IPv4, a /16 of IPv6.
WIDEST_PREFIX = {4: 8, 6: 16}


def exemption_problems(networks):
    """One line per entry that is not an exemptable address or network, naming it."""
    problems = []
    for entry in networks:
        try:
            network = ipaddress.ip_network(str(entry), strict=False)
        except ValueError:
            problems.append(f"{entry!r} is not an IP address or network (address/prefix)")
            continue
        widest = WIDEST_PREFIX[network.version]
        if network.prefixlen < widest:
            problems.append(
                f"{entry} is wider than a /{widest}: an exemption that wide switches the controls off for attackers too"
            )
    return problems


def host_networks(addresses):
    """Host addresses as one-address networks (``/32``, ``/128``), for a list of
    clients such as pg_hba's; an entry that is not an address raises, naming it
    (a host whose facts have no default address gives an undefined one)."""
    networks = []
    for entry in addresses:
        try:
            address = ipaddress.ip_address(str(entry))
        except ValueError:
            raise ValueError(f"{entry!r} is not a host's IP address") from None
        networks.append(f"{address}/{address.max_prefixlen}")
    return networks
