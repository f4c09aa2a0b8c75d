"""The WSGI application for gunicorn: ``gunicorn sender_validation.wsgi:app``.

The configuration file is SENDER_VALIDATION_CONFIG (default
/etc/sender-validation/config.json). The store is migrated by
``python3 -m sender_validation migrate`` before the service starts, not here.
"""

import logging
import os
import sys

from sender_validation import config as configuration
from sender_validation.dovecot_auth import DovecotAuth
from sender_validation.service import SenderService
from sender_validation.store import open_store
from sender_validation.web import create_app

# The service's own lines (a confirmation mail sent or not, an address validated
# or refused) reach the journal through gunicorn's stderr; tokens are redacted
# from every record (web.py).
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
_config = configuration.load(os.environ.get("SENDER_VALIDATION_CONFIG", "/etc/sender-validation/config.json"))
app = create_app(
    SenderService(open_store(_config["store"]), configuration.service_settings(_config)),
    DovecotAuth(_config["auth_socket"]),
    _config,
)
