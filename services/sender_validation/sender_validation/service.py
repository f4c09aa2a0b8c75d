"""What a user can do with their external sender addresses, for the pages and the API alike.

The address rule is the collection's (``sender_address``, the module's own):
an address here is canonical before it is stored, mailed or compared.
Addresses at the domains the provider hosts are refused: those come from the
accounts (the inventory), not from a confirmation link.

The limits' checks and the new request are one transaction (``lock_requests``):
two requests at once cannot both pass a limit that allows one. The mail goes
out after the answer, from the outbox's thread, so the answer takes as long
whether a mail went out or not; the address handed to sendmail is the stored,
canonical one.
"""

from __future__ import annotations

import atexit
import dataclasses
import logging
import queue
import threading
import time
import typing

from ansible_collections.mailops.submission.plugins.module_utils.sender_address import AddressError, normalize_sender

from sender_validation.confirmation_mail import MailSettings, confirmation_message, send
from sender_validation.dmarc import STRICT, DmarcSettings, Policy, lookup
from sender_validation.limits import DAY, Limits, refusal

log = logging.getLogger("sender_validation")


class InputError(ValueError):
    """An address the user may not add; the message names it and says why."""


@dataclasses.dataclass(frozen=True)
class Settings:
    base_url: str
    hosted_domains: frozenset
    mail: MailSettings
    limits: Limits = dataclasses.field(default_factory=Limits)
    token_ttl: int = DAY
    block_for: int = 30 * DAY
    session_ttl: int = 8 * 3600
    dmarc: DmarcSettings = dataclasses.field(default_factory=DmarcSettings)


class Added(typing.NamedTuple):
    """What adding an address gives: its canonical form, and its domain's DMARC policy."""

    sender: str
    dmarc: Policy


class Outbox:
    """Mails sent one after another by a thread of their own, after the web answer.

    mailer(message, envelope_sender, recipient) sends one; a failure is logged.
    The thread starts at the first mail (after gunicorn forked its worker).
    """

    def __init__(self, mailer):
        self.mailer = mailer
        self.queue = queue.Queue()
        self.thread = None
        self.lock = threading.Lock()

    def put(self, message, envelope_sender, recipient):
        with self.lock:
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._run, name="outbox", daemon=True)
                self.thread.start()
                atexit.register(self.drain, timeout=30)
        self.queue.put((message, envelope_sender, recipient))

    def _run(self):
        while True:
            message, envelope_sender, recipient = self.queue.get()
            try:
                self.mailer(message, envelope_sender, recipient)
            except Exception:
                log.exception("the confirmation mail to %s was not sent", recipient)
            finally:
                self.queue.task_done()

    def drain(self, timeout=None):
        """Wait until every mail put so far is handed over (or timeout seconds); whether it was."""
        done = threading.Event()

        def wait():
            self.queue.join()
            done.set()

        threading.Thread(target=wait, daemon=True).start()
        return done.wait(timeout)


class SenderService:
    def __init__(self, store, settings, mailer=send, clock=time.time):
        self.store = store
        self.settings = settings
        self.outbox = Outbox(mailer)
        self.clock = clock

    def now(self):
        return int(self.clock())

    def canonical(self, raw):
        """The canonical form of an address a user typed; InputError if it may not be added."""
        try:
            sender = normalize_sender(raw)
        except AddressError as exc:
            raise InputError(str(exc)) from None
        local, domain = sender.split("@", 1)
        if not local:
            raise InputError(f"{raw!r}: give one address, not a whole domain")
        if domain in self.settings.hosted_domains:
            raise InputError(f"{sender}: addresses at {domain} come with the accounts; ask the account's owner")
        return sender

    def add(self, login, raw_sender, client_address):
        """Ask for a confirmation mail to raw_sender for login; Added (the canonical
        address, its domain's DMARC policy).

        Whether a mail went out is not returned: the limits and blocks are
        silent to the asker (the log says which applied). The DMARC policy
        depends on the domain alone, and is read before the store is locked.
        """
        sender = self.canonical(raw_sender)
        policy = lookup(sender.rpartition("@")[2], self.settings.dmarc)
        if self.settings.dmarc.refuse and policy.kind in STRICT:
            raise InputError(f"{sender}: {policy.warning} This service does not validate such addresses.")
        return Added(self._request(login, sender, client_address), policy)

    def _request(self, login, sender, client_address):
        now = self.now()
        with self.store.transaction():
            self.store.lock_requests()
            validated, _ = self.store.senders(login, now)
            if sender in validated:
                return sender
            why_not = refusal(self.store, sender, login, now, self.settings.limits)
            if why_not:
                log.info("no confirmation mail to %s for %s: %s", sender, login, why_not)
                return sender
            token = self.store.request(sender, login, client_address, now, self.settings.token_ttl)
            self.store.log_request(sender, login, now)
            request = self.store.find_request(token)
            link = f"{self.settings.base_url.rstrip('/')}/confirm/{token}"
            # Built before the commit: a message that cannot be built stores nothing.
            message = confirmation_message(request, link, self.settings.mail)
        self.outbox.put(message, self.settings.mail.no_reply, request.sender)
        log.info("confirmation mail to %s for %s (client %s)", sender, login, client_address)
        return sender

    def senders(self, login):
        """(validated, pending) addresses of a login."""
        return self.store.senders(login, self.now())

    def provided(self, login):
        """The addresses the provider set for a login: listed, not removable by the user."""
        return self.store.provided(login)

    def remove(self, login, raw_sender):
        try:
            sender = normalize_sender(raw_sender)
        except AddressError as exc:
            # A pair stored before the address rule refused its kind (a domain
            # whose last label is all digits, say) goes as the page lists it.
            if isinstance(raw_sender, str) and self.store.remove(raw_sender.strip(), login):
                return True
            raise InputError(str(exc)) from None
        return self.store.remove(sender, login)

    def open_request(self, token):
        """The request a link names, while it can still be confirmed; else None."""
        request = self.store.find_request(token)
        if request is None or request.expires_at <= self.now():
            return None
        return request

    def confirm(self, token, login):
        """Confirm for the logged-in login; the validated address, or None."""
        sender = self.store.confirm(token, login, self.now())
        if sender:
            log.info("%s validated %s", login, sender)
        return sender

    def not_me(self, token):
        request = self.store.refuse(token, self.now(), self.settings.block_for)
        if request:
            log.info("%s refused %s's request; blocked", request.sender, request.login)
        return request

    # The web pages' sessions: in the store, so that they end for every copy of their cookie.

    def open_session(self, login):
        return self.store.open_session(login, self.now(), self.settings.session_ttl)

    def session_login(self, session_id):
        return self.store.session_login(session_id, self.now()) if session_id else None

    def end_session(self, session_id):
        if session_id:
            self.store.end_session(session_id)

    def end_sessions(self, login):
        return self.store.end_sessions(login)
