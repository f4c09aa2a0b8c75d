"""``python3 -m auth_relay LISTEN UPSTREAM``: relay Postfix's logins on the unix
socket LISTEN to Dovecot's auth-client socket UPSTREAM (roles/submission_sasl)."""

import asyncio
import logging
import os
import sys

from auth_relay.relay import serve


def main(argv):
    if len(argv) != 3:
        print("usage: python3 -m auth_relay LISTEN UPSTREAM", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    # The socket is for group postfix (the directory's group) only.
    os.umask(0o007)
    asyncio.run(serve(argv[1], argv[2]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
