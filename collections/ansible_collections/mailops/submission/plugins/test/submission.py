# Copyright: smtp-submission developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Tests with the collection's address and DNS-name rules, the ones its modules enforce."""

from __future__ import annotations

DOCUMENTATION = r"""
name: submission
short_description: Address and DNS-name tests with the collection's own rules
description:
  - C(login_address) is true when the value is a SASL login that M(mailops.submission.sender_allowlist) accepts
    (local@domain, see its documentation).
  - C(sender_address) is true when the value is a sender key it accepts (local@domain or @domain).
  - C(dns_name) is true when the value is a DNS name by the collection's one rule, written as the collection writes
    names (lower case, an internationalised label as its A-label, no trailing dot), with labels of letters, digits
    and C(-) (not at an end) of at most 63 octets, at most 253 octets in all, the last label not all digits. Two
    labels at least, unless C(single_label=true) (a host name such as C(db1)).
  - C(ip_address) is true when the value is an IPv4 or IPv6 address written in its canonical form (C(10.0.0.5),
    C(2001:db8::5)), as a certificate's IP name and libpq compare it.
  - C(container_host) is true when the value, a host's C(ansible_facts), says the host is a container guest
    (Docker, Podman, LXC, systemd-nspawn, OpenVZ), which cannot make a user namespace for a unit
    (C(PrivateUsers=)).
author: smtp-submission developers
"""

EXAMPLES = r"""
- name: Check the service names
  ansible.builtin.assert:
    that: item is mailops.submission.dns_name
  loop: "{{ submission_tls_names }}"

- name: Check a host name that may be one label
  ansible.builtin.assert:
    that: database_host is mailops.submission.dns_name(single_label=true)

- name: Keep a unit's user namespace except in a container
  ansible.builtin.set_fact:
    private_users: "{{ ansible_facts is not mailops.submission.container_host }}"
"""

from ansible_collections.mailops.submission.plugins.module_utils.dns_name import is_dns_name
from ansible_collections.mailops.submission.plugins.module_utils.fleet_database import ip_address
from ansible_collections.mailops.submission.plugins.module_utils.sender_address import (
    AddressError,
    normalize_login,
    normalize_sender,
)


def _accepts(normalize):
    def test(value):
        try:
            normalize(value)
        except AddressError:
            return False
        return True

    return test


def is_ip_address(value):
    """True for an address already written in its canonical form."""
    return value is not None and ip_address(value) == value


# ansible_facts.virtualization_type of a container guest.
CONTAINER_TYPES = frozenset({"docker", "podman", "lxc", "container", "containerd", "systemd-nspawn", "openvz"})


def is_container_host(facts):
    """True when a host's facts say it is a container guest."""
    facts = facts or {}
    return facts.get("virtualization_role") == "guest" and facts.get("virtualization_type") in CONTAINER_TYPES


class TestModule:
    def tests(self):
        return {
            "login_address": _accepts(normalize_login),
            "sender_address": _accepts(normalize_sender),
            "dns_name": is_dns_name,
            "ip_address": is_ip_address,
            "container_host": is_container_host,
        }
