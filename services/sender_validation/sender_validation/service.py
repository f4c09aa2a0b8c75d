"""What a user can do with their external sender addresses, for the pages and the API alike.

The address rule is the collection's (``sender_address``, the module's own):
an address here is canonical before it is stored, mailed or compared.
Addresses at the domains the provider hosts are refused: those come from the
accounts (the inventory), not from a confirmation link.
"""

from __future__ import annotations

import dataclasses
import logging
import time

from sender_validation.confirmation_mail import MailSettings, confirmation_message, send
from sender_validation.limits import DAY, Limits, refusal
from sender_validation.sender_address import AddressError, normalize_sender

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


class SenderService:
    def __init__(self, store, settings, mailer=send, clock=time.time):
        self.store = store
        self.settings = settings
        self.mailer = mailer
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
        """Ask for a confirmation mail to raw_sender for login; the canonical address.

        Whether a mail went out is not returned: the limits and blocks are
        silent to the asker (the log says which applied).
        """
        sender = self.canonical(raw_sender)
        now = self.now()
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
        self.mailer(confirmation_message(request, link, self.settings.mail), self.settings.mail.no_reply)
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
