"""The WSGI application for gunicorn: ``gunicorn sender_validation.wsgi:app``.

The configuration file is SENDER_VALIDATION_CONFIG (default
/etc/sender-validation/config.json). The store is migrated by
``python3 -m sender_validation migrate`` before the service starts, not here.
"""

import os

from werkzeug.middleware.proxy_fix import ProxyFix

from sender_validation import config as configuration
from sender_validation.dovecot_auth import DovecotAuth
from sender_validation.service import SenderService
from sender_validation.store import Store
from sender_validation.web import create_app

_config = configuration.load(os.environ.get("SENDER_VALIDATION_CONFIG", "/etc/sender-validation/config.json"))
app = create_app(
    SenderService(Store(_config["store"]), configuration.service_settings(_config)),
    DovecotAuth(_config["auth_socket"]),
    _config,
)
# gunicorn listens on a unix socket that only nginx reaches, and nginx sets
# X-Forwarded-For to the client's address alone: that is the address Dovecot's
# failure penalty counts, and the one the confirmation mail names.
app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1)
