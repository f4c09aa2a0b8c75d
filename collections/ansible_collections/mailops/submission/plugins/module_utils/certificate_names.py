# Copyright: smtp-submission developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which supplied certificate serves which service name and key type.

A certificate covers a name when one of its DNS subject alternative names is
the name, or a wildcard for exactly one label in its place (RFC 6125: the
wildcard stands for the whole left-most label only, never for several).
"""

from __future__ import annotations

# community.crypto's openssl_privatekey_info names key types thus.
KEY_TYPES = {"ECC": "ecdsa", "RSA": "rsa"}


def covers(subject_alt_names, name):
    """True when one of the subject alternative names (as community.crypto
    lists them, ``DNS:a.example``) covers the host name."""
    sans = {san.lower() for san in subject_alt_names}
    parent = name.lower().split(".", 1)[1] if "." in name else None
    return f"dns:{name.lower()}" in sans or (parent is not None and f"dns:*.{parent}" in sans)


def certificate_matches(names, key_types, subject_alt_names, key_kinds):
    """For every name and key type, the index of the first supplied pair of that
    key type that covers the name, or None: ``[{name, type, index}]``.

    ``subject_alt_names`` and ``key_kinds`` hold one entry per supplied pair, in
    order: its certificate's subject alternative names and its key's type
    (``ECC`` or ``RSA``)."""
    kinds = [KEY_TYPES.get(kind) for kind in key_kinds]
    matches = []
    for name in names:
        for key_type in key_types:
            index = next(
                (
                    position
                    for position, (sans, kind) in enumerate(zip(subject_alt_names, kinds, strict=True))
                    if kind == key_type and covers(sans or [], name)
                ),
                None,
            )
            matches.append({"name": name, "type": key_type, "index": index})
    return matches
