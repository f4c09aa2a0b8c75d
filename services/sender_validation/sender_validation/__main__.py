"""``python3 -m sender_validation migrate [CONFIG]``: bring the store's schema up to date."""

import sys

from sender_validation import config as configuration
from sender_validation.store import Store


def main(argv):
    if len(argv) < 2 or argv[1] != "migrate":
        print("usage: python3 -m sender_validation migrate [CONFIG]", file=sys.stderr)
        return 2
    path = argv[2] if len(argv) > 2 else "/etc/sender-validation/config.json"
    try:
        config = configuration.load(path)
    except (configuration.ConfigError, OSError) as exc:
        print(f"sender_validation: {exc}", file=sys.stderr)
        return 1
    store = Store(config["store"])
    applied = store.migrate()
    print(f"schema version {store.schema_version()}; applied {applied or 'none'}")
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
