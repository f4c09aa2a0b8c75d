"""The pages and the JSON API (Flask, run by gunicorn behind nginx).

Logins are checked by Dovecot's auth service with the client's address, so
the SMTP login forms work here and Dovecot's failure penalty applies. A session
lives in the store (``web_sessions``): the signed cookie holds its id and a
CSRF token, and every form POST carries that token. Logging out ends the
session for every copy of the cookie; ``python3 -m sender_validation
end-sessions LOGIN`` ends all of a login's (after a password change); a
session lasts ``session_ttl`` seconds from the login, however it is used.
Confirming takes a POST in a session of the login
that asked: a link scanner may open the link and submit its form, but it
cannot log in. The API authenticates each call with HTTP Basic (the same
credentials) and sets no cookie, so it needs no CSRF token.

Confirmation tokens travel in the path (``/confirm/<token>``): every log
record of the process (Flask's, werkzeug's, gunicorn's access and error logs)
has them replaced by ``[token]`` (``redact_tokens``).
"""

from __future__ import annotations

import functools
import hmac
import logging
import re
import secrets
import types

from flask import Blueprint, Flask, abort, current_app, g, jsonify, redirect, render_template, request, session, url_for
from werkzeug.middleware.proxy_fix import ProxyFix

from sender_validation.dovecot_auth import AuthError
from sender_validation.service import InputError
from sender_validation.smtp_settings import smtp_settings

log = logging.getLogger("sender_validation")

TOKEN_IN_PATH = re.compile(r"(/confirm/)[^\s/?#\"'\\]+")
# Where a login may return to: a path of this site's own, nothing a browser
# could read as another host (//, backslashes, escapes, a scheme).
LOCAL_PATH = re.compile(r"/(?:[A-Za-z0-9._~-]+(?:/[A-Za-z0-9._~-]+)*/?)?")


def redact(text):
    return TOKEN_IN_PATH.sub(r"\1[token]", text)


def redact_tokens():
    """Make every log record of the process carry [token] for a confirmation
    link's token: its message, arguments and traceback, whoever logs it."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "redacts_tokens", False):
        return

    def factory(*args, **kwargs):
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a bad format string stays the logging module's to report
            return record
        if "/confirm/" in message:
            record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return record

    factory.redacts_tokens = True
    logging.setLogRecordFactory(factory)


def safe_next(next_page):
    """next_page when it is a path of this site, else the senders page."""
    if isinstance(next_page, str) and LOCAL_PATH.fullmatch(next_page):
        return next_page
    return url_for("pages.senders_page")


pages = Blueprint("pages", __name__)
api = Blueprint("api", __name__, url_prefix="/api")


def create_app(service, auth, config):
    """The WSGI app. service: a SenderService; auth: a DovecotAuth; config: the
    deployed configuration (secret_key, primary_domain, listeners, ...)."""
    redact_tokens()
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=config["secret_key"],
        SESSION_COOKIE_SECURE=config.get("cookie_secure", True),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        # The store's session ends it; the cookie lasts no longer.
        PERMANENT_SESSION_LIFETIME=service.settings.session_ttl,
        SESSION_REFRESH_EACH_REQUEST=False,
        MAX_CONTENT_LENGTH=16 * 1024,
    )
    app.extensions["sender_validation"] = types.SimpleNamespace(service=service, auth=auth, config=config)
    # nginx on the same host is the one proxy: its X-Forwarded-For is the client.
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1)
    app.jinja_env.globals["csrf_token"] = csrf_token
    app.jinja_env.globals["service_name"] = config["service_name"]
    app.before_request(check_csrf)
    app.after_request(security_headers)
    app.register_blueprint(pages)
    app.register_blueprint(api)
    return app


def deps():
    return current_app.extensions["sender_validation"]


def csrf_token():
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


def check_csrf():
    if request.method == "POST" and not request.path.startswith("/api/"):
        sent = request.form.get("csrf", "")
        if not sent or not hmac.compare_digest(sent, session.get("csrf", "")):
            abort(400, "The form has expired or did not come from this site. Reload the page and try again.")


def security_headers(response):
    # The confirmation link holds its token: no Referer may carry it away.
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Content-Security-Policy"] = "default-src 'self'; frame-ancestors 'none'; form-action 'self'"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "no-store"
    return response


_LOGIN_SHAPE = re.compile(r"[A-Za-z0-9._+-]{1,64}(?:[%@][A-Za-z0-9.-]{1,253}\.[A-Za-z0-9-]{2,63})?")


def check_login(login, password):
    """The canonical login, or None; AuthError when Dovecot cannot be asked."""
    result = deps().auth.authenticate(login, password, request.remote_addr)
    if result.ok:
        return result.user
    # What was typed is logged only in a login's shape (user, user%domain,
    # user@domain): a password typed into the login field stays out of the journal.
    shown = login if _LOGIN_SHAPE.fullmatch(login or "") else "(not a login)"
    log.info("failed web login for %r from %s", shown, request.remote_addr)
    return None


def current_login():
    """The login of the request's session, while the store holds that session."""
    if "login" not in g:
        g.login = deps().service.session_login(session.get("sid"))
    return g.login


def login_required(view):
    """A page for a logged-in login, which the view gets as its first argument."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        login = current_login()
        if not login:
            return redirect(url_for("pages.login_page", next=request.path if request.method == "GET" else None))
        return view(login, *args, **kwargs)

    return wrapper


def api_login_required(view):
    """An API call with HTTP Basic credentials, checked by Dovecot on every call."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        credentials = request.authorization
        try:
            login = None
            if credentials is not None and credentials.type == "basic":
                login = check_login(credentials.username or "", credentials.password or "")
        except AuthError:
            return api_error(503, "the auth service is unavailable")
        if login is None:
            return api_error(401, "log in with the account's SMTP login and password")
        return view(login, *args, **kwargs)

    return wrapper


@pages.get("/login")
def login_page():
    return render_template("login.html", next=request.args.get("next", ""), error=None)


@pages.post("/login")
def login():
    next_page = request.form.get("next", "")
    try:
        user = check_login(request.form.get("login", ""), request.form.get("password", ""))
    except AuthError:
        log.exception("the auth service could not be asked")
        return render_template("login.html", next=next_page, error="Logins are unavailable; try later."), 503
    if user is None:
        return render_template("login.html", next=next_page, error="Wrong login or password."), 401
    deps().service.end_session(session.get("sid"))
    session.clear()
    session.permanent = True
    session["sid"] = deps().service.open_session(user)
    session["csrf"] = secrets.token_urlsafe(32)
    # Only a path on this site: never an address elsewhere.
    return redirect(safe_next(next_page))


@pages.post("/logout")
def logout():
    deps().service.end_session(session.get("sid"))
    session.clear()
    return redirect(url_for("pages.login_page"))


def render_senders(login, message):
    validated, pending = deps().service.senders(login)
    provided = deps().service.provided(login)
    return render_template(
        "senders.html", login=login, validated=validated, pending=pending, provided=provided, message=message
    )


@pages.get("/")
@login_required
def senders_page(login):
    return render_senders(login, None)


@pages.post("/senders/add")
@login_required
def add_sender(login):
    try:
        sender, dmarc = deps().service.add(login, request.form.get("address", ""), request.remote_addr)
        message = f"If {sender} accepts mail, a confirmation link is on its way to it. {dmarc.warning}".strip()
        status = 200
    except InputError as exc:
        message, status = str(exc), 400
    return render_senders(login, message), status


@pages.post("/senders/remove")
@login_required
def remove_sender(login):
    try:
        deps().service.remove(login, request.form.get("address", ""))
    except InputError:
        abort(400)
    return redirect(url_for("pages.senders_page"))


@pages.get("/smtp-settings")
@login_required
def smtp_settings_page(login):
    settings = smtp_settings(login, deps().config["primary_domain"], deps().config["listeners"])
    return render_template("smtp_settings.html", login=login, settings=settings)


@pages.get("/confirm/<token>")
def confirm_page(token):
    pending = deps().service.open_request(token)
    if pending is None:
        return render_template("confirm_gone.html"), 404
    return render_template("confirm.html", request_=pending, token=token, login=current_login())


@pages.post("/confirm/<token>")
def confirm(token):
    pending = deps().service.open_request(token)
    if pending is None:
        return render_template("confirm_gone.html"), 404
    if request.form.get("action") == "not-me":
        # Link scanners submit forms too, but do not type the address: without
        # it, a scanner would cancel the request and block the login for a month.
        if request.form.get("address", "").strip().lower() != pending.sender:
            error = "Type the address this message came to, to report that you did not ask."
            page = render_template(
                "confirm.html", request_=pending, token=token, login=current_login(), not_me_error=error
            )
            return page, 400
        deps().service.not_me(token)
        return render_template("confirm_done.html", sender=pending.sender, login=pending.login, refused=True)
    if current_login() != pending.login:
        return render_template("confirm.html", request_=pending, token=token, login=current_login()), 403
    sender = deps().service.confirm(token, pending.login)
    if sender is None:
        return render_template("confirm_gone.html"), 404
    return render_template("confirm_done.html", sender=sender, login=pending.login, refused=False)


# The JSON API, for a webmail: HTTP Basic with the same credentials on every call.


def api_error(status, message):
    response = jsonify(error=message)
    response.status_code = status
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Basic realm="sender addresses"'
    return response


@api.route("/senders", methods=["GET", "POST"])
@api_login_required
def api_senders(login):
    if request.method == "POST":
        body = request.get_json(silent=True) or {}
        try:
            sender, policy = deps().service.add(login, str(body.get("address", "")), request.remote_addr)
        except InputError as exc:
            return api_error(400, str(exc))
        validated, pending = deps().service.senders(login)
        checked = policy.kind not in ("unknown", "unchecked")
        dmarc = {"policy": policy.kind, "checked": checked, "warning": policy.warning}
        return jsonify(address=sender, validated=validated, pending=pending, dmarc=dmarc), 202
    validated, pending = deps().service.senders(login)
    return jsonify(login=login, validated=validated, pending=pending, provided=deps().service.provided(login))


@api.delete("/senders/<address>")
@api_login_required
def api_remove(login, address):
    try:
        removed = deps().service.remove(login, address)
    except InputError as exc:
        return api_error(400, str(exc))
    return ("", 204) if removed else api_error(404, f"{address} is not among {login}'s addresses")
