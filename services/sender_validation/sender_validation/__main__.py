"""The service's commands, for the role and its systemd units.

``python3 -m sender_validation migrate [CONFIG]``: bring the store's schema up to date.
``python3 -m sender_validation sender-map [CONFIG]``: serve the store to Postfix
(socketmap) on the socket systemd passes.
``python3 -m sender_validation end-sessions LOGIN [CONFIG]``: log LOGIN out of
the web pages everywhere (after a password change, or a stolen cookie).
"""

import sys

from ansible_collections.mailops.submission.plugins.module_utils.sender_address import AddressError, normalize_login

from sender_validation import config as configuration
from sender_validation.map_server import make_server
from sender_validation.sender_map import SenderMap
from sender_validation.store import open_store

USAGE = "usage: python3 -m sender_validation {migrate,sender-map} [CONFIG] | end-sessions LOGIN [CONFIG]"
DEFAULT_CONFIG = "/etc/sender-validation/config.json"


def migrate(config):
    store = open_store(config["store"])
    applied = store.migrate()
    print(f"schema version {store.schema_version()}; applied {applied or 'none'}")
    store.close()
    return 0


def sender_map(config):
    try:
        server = make_server(SenderMap(config["store"], config["hosted_domains"]))
    except RuntimeError as exc:
        print(f"sender_validation: {exc}", file=sys.stderr)
        return 1
    server.serve_forever()
    return 0


def end_sessions(config, login):
    store = open_store(config["store"])
    try:
        ended = store.end_sessions(login)
    finally:
        store.close()
    print(f"{login}: {ended} web session(s) ended")
    return 0


COMMANDS = {"migrate": migrate, "sender-map": sender_map, "end-sessions": end_sessions}


def main(argv):
    if len(argv) < 2 or argv[1] not in COMMANDS or (argv[1] == "end-sessions" and len(argv) < 3):
        print(USAGE, file=sys.stderr)
        return 2
    arguments = []
    if argv[1] == "end-sessions":
        try:
            arguments.append(normalize_login(argv[2]))
        except AddressError as exc:
            print(f"sender_validation: not a login: {exc}", file=sys.stderr)
            return 2
        argv = argv[:2] + argv[3:]
    path = argv[2] if len(argv) > 2 else DEFAULT_CONFIG
    try:
        config = configuration.load(path)
    except (configuration.ConfigError, OSError) as exc:
        print(f"sender_validation: {exc}", file=sys.stderr)
        return 1
    return COMMANDS[argv[1]](config, *arguments)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
