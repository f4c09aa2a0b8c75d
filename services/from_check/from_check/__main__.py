"""``python3 -m from_check [CONFIG]``: run the milter with a JSON configuration.

CONFIG (default /etc/from-check/config.json) names the milter's socket, the
lmdb tables and the store's socketmap socket (or, in fleet mode, the fleet
database), and the logins that may send as anyone
(roles/submission_from_check writes it).
"""

import json
import os
import sys

from from_check.milter import run

REQUIRED = {"socket": str, "lmdb_tables": list}
OPTIONAL = {
    "store_socket": (str, type(None)),
    "store_map": str,
    "send_as_anyone": list,
    "recipient_delimiter": str,
    "store_timeout": (int, float),
    # Seconds a message may wait for its verdict (451 past it), and the threads that ask the tables.
    "deadline": (int, float),
    "lookup_threads": int,
    # A display name or comment may show an address other than the mailbox.
    "display_addresses": bool,
    # The fleet database (libpq connection string, password in a passfile).
    "database": (str, type(None)),
    # Postfix's non_smtpd_milters socket, and for the local mail it judges:
    # envelope sender -> the addresses its author headers may show.
    "local_socket": (str, type(None)),
    "local_senders": dict,
    # DKIM: {"manifest": path of the dkim_keys module's keys.json}. With it the
    # two sockets above sign too; sign_socket signs without the From check,
    # check_socket checks without signing (milter.py).
    "dkim": (dict, type(None)),
    "sign_socket": (str, type(None)),
    "check_socket": (str, type(None)),
    # The per-login limits: the ratelimit role's limits file (limits.py reads
    # it, and again when it changes). With it every socket but local_socket
    # counts; count_socket counts and does nothing else.
    "limits": (str, type(None)),
    "count_socket": (str, type(None)),
}


def load(path):
    with open(path, encoding="utf-8") as handle:
        config = json.load(handle)
    for name, kind in REQUIRED.items():
        if not isinstance(config.get(name), kind):
            raise ValueError(f"{path}: {name!r} must be a {kind.__name__}")
    for name, kinds in OPTIONAL.items():
        if name in config and not isinstance(config[name], kinds):
            raise ValueError(f"{path}: {name!r} has the wrong type: {config[name]!r}")
    for sender, addresses in config.get("local_senders", {}).items():
        if not isinstance(addresses, list) or not all(isinstance(each, str) and "@" in each for each in addresses):
            raise ValueError(f"{path}: local_senders[{sender!r}] must be a list of addresses: {addresses!r}")
    dkim = config.get("dkim")
    if dkim is not None and (set(dkim) != {"manifest"} or not isinstance(dkim["manifest"], str)):
        raise ValueError(f"{path}: dkim must be {{'manifest': a path}}: {dkim!r}")
    unknown = sorted(set(config) - set(REQUIRED) - set(OPTIONAL))
    if unknown:
        raise ValueError(f"{path}: unknown settings {unknown}")
    return config


def main(argv):
    path = argv[1] if len(argv) > 1 else "/etc/from-check/config.json"
    try:
        config = load(path)
    except (OSError, ValueError) as exc:
        print(f"from_check: {exc}", file=sys.stderr)
        return 1
    # The socket is for Postfix (group postfix) only.
    os.umask(0o007)
    run(config)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
