# Copyright: smtp-submission developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which logins may send as an address, asked the way Postfix asks.

smtpd's reject_authenticated_sender_login_mismatch looks the envelope sender
up in smtpd_sender_login_maps with the keys of mail_addr_find(3): the address,
then the address without its ``+extension``, then ``@domain``; for each key it
asks every table in order, and the first key any table holds decides. The
header-From milter asks the same tables with these keys, so that the header
and the envelope obey one rule.

Postfix also tries the bare local part for domains it delivers to itself
(mydestination); this service delivers to none but ``localhost``, whose
addresses no table holds, so that key is not asked.

Pure Python, no Ansible import: the milter imports it unchanged.
"""

from __future__ import annotations


def lookup_keys(address, delimiter="+"):
    """The keys to look up for an address (already lower-cased), in Postfix's order."""
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        return [address] if address else []
    keys = [address]
    if delimiter and delimiter in local:
        bare = local.split(delimiter, 1)[0]
        if bare:
            keys.append(f"{bare}@{domain}")
    keys.append(f"@{domain}")
    return keys


def owners(value):
    """The logins of a table's value (``login1,login2`` or with spaces), lower-cased."""
    return {login.strip().lower() for login in value.replace(" ", ",").split(",") if login.strip()}


def union(*tables):
    """One table that gives the logins of every table holding a key (Postfix's unionmap)."""

    def lookup(key):
        values = [value for value in (table(key) for table in tables) if value]
        return ",".join(values) or None

    return lookup


def first_owners(address, maps, delimiter="+"):
    """The logins of the first key found, and that key; (set(), None) if none is.

    maps: callables that take a key and return its value or None, in the order of
    smtpd_sender_login_maps: for each key the first map holding it decides
    (unionmap members are joined with union() first). A map that cannot be read
    raises, and the caller decides what that means (a 4xx).
    """
    for key in lookup_keys(address, delimiter):
        for lookup in maps:
            value = lookup(key)
            if value:
                return owners(value), key
    return set(), None


def lmdb_table_files(maps):
    """The files of Postfix lmdb tables named ``lmdb:/path`` (postmap writes /path.lmdb).

    The header-From milter reads these itself; a table of another type is
    refused here, by name, rather than left out of the check.
    """
    files = []
    for table in maps:
        kind, _, path = str(table).partition(":")
        if kind != "lmdb" or not path.startswith("/"):
            raise ValueError(f"{table!r}: the header-From milter reads lmdb:/absolute/path tables only")
        files.append(f"{path}.lmdb")
    return files
