"""The verdict on one message: its login, its From headers, the tables."""

from __future__ import annotations

from dataclasses import dataclass

from ansible_collections.mailops.submission.plugins.module_utils.sender_lookup import (
    first_owners,
    lookup_keys,
    owners,
    union,
)

from from_check.header_from import FromError, author_addresses
from from_check.tables import LmdbTable, PgsqlTable, SocketmapTable, TableError


@dataclass(frozen=True)
class Verdict:
    """accept, refuse (5.7.1), defer (4.3.0) or limit, and the text a client reads."""

    action: str
    text: str = ""
    # For the log only: what a client need not read (paths, errors).
    detail: str = ""
    # The reply's code and status when the action's own do not fit (a limit's 450 4.7.1).
    reply: str = ""


ACCEPT = Verdict("accept")
# Accepted without a judgment of the author headers (a login that may send as
# anyone, local mail of a sender not listed, a socket without the check): the
# message is signed with the provider's domain, never aligned with its From.
UNJUDGED = Verdict("accept", detail="author headers not judged")


class FromCheck:
    """The allowlist as smtpd_sender_login_maps has it, asked for the header's address.

    maps: lookup callables in smtpd_sender_login_maps' order (the lmdb tables
    joined as Postfix's unionmap, then the store); send_as_anyone: logins the
    check lets through (a list server, a monitoring account).
    """

    def __init__(self, maps, send_as_anyone=(), delimiter="+", display_addresses=False, local_senders=None):
        self.maps = list(maps)
        # Whether the first map is read in this process (the lmdb tables), without a wait.
        self.in_process = False
        self.send_as_anyone = frozenset(login.lower() for login in send_as_anyone)
        self.delimiter = delimiter
        self.display_addresses = display_addresses
        # Local mail: envelope sender -> the addresses its author headers may show.
        self.local_senders = {
            sender.lower(): frozenset(address.lower() for address in addresses)
            for sender, addresses in (local_senders or {}).items()
        }

    @classmethod
    def from_config(cls, config):
        if config.get("database"):
            # The fleet's one view holds what the lmdb tables and the store hold on one host.
            maps = [PgsqlTable(config["database"], timeout=config.get("store_timeout", 2))]
            return cls(maps, *cls._options(config))
        maps = [union(*(LmdbTable(path) for path in config["lmdb_tables"]))]
        if config.get("store_socket"):
            maps.append(
                SocketmapTable(
                    config["store_socket"], config.get("store_map", "senders"), timeout=config.get("store_timeout", 2)
                )
            )
        check = cls(maps, *cls._options(config))
        check.in_process = True
        return check

    @staticmethod
    def _options(config):
        return (
            config.get("send_as_anyone", ()),
            config.get("recipient_delimiter", "+"),
            config.get("display_addresses", False),
            config.get("local_senders", {}),
        )

    def read_local(self, sender, headers):
        """The verdict on local mail (sendmail's, no login): when its envelope
        sender is one of local_senders, its author headers show only that
        sender's addresses; other local mail passes. No table is asked."""
        allowed = self.local_senders.get((sender or "").lower())
        if allowed is None:
            return UNJUDGED
        try:
            authors = author_addresses(headers, self.display_addresses)
        except FromError as exc:
            return Verdict("refuse", f"{exc}")
        for header, address in authors:
            if address.lower() not in allowed:
                return Verdict("refuse", f"the {header} header's address <{address}> is not one that {sender} may show")
        return ACCEPT

    def verdict(self, login, headers):
        """The verdict on a message. headers: lower-case name -> values, the author headers at least."""
        read = self.read(login, headers)
        return read if isinstance(read, Verdict) else self.judge(login, read)

    def read(self, login, headers):
        """The first step, CPU only: a verdict without any table, or the
        [(header, address)] the tables must judge."""
        if not login:
            return Verdict("refuse", "the From header is checked for logged-in clients only; log in first")
        if login.lower() in self.send_as_anyone:
            return UNJUDGED
        try:
            return author_addresses(headers, self.display_addresses)
        except FromError as exc:
            return Verdict("refuse", f"{exc}")

    def read_judged(self, login, headers):
        """read(), and the verdict at once where judge_at_once() has one: the
        milter's readers' thread does both, and only the rest goes on to the
        lookup threads."""
        read = self.read(login, headers)
        if isinstance(read, Verdict):
            return read
        at_once = self.judge_at_once(login, read)
        return read if at_once is None else at_once

    def judge_at_once(self, login, authors):
        """judge() without asking beyond this process: the verdict when the
        first map, read in this process (the lmdb tables), holds each author
        address itself and lets the login send as it, as judge() would find it
        first; None when judge() must ask further (another key, the store) or
        would refuse (it says why)."""
        if not self.in_process:
            return None
        login = login.lower()
        for _, address in authors:
            try:
                value = self.maps[0](next(iter(lookup_keys(address.lower(), self.delimiter))))
            except Exception:  # any fault is judge()'s to answer (a 4xx), never the reader's 5xx
                return None
            if not value or login not in owners(value):
                return None
        return ACCEPT

    def judge(self, login, authors):
        """The second step: each author address must be one the login may send as."""
        login = login.lower()
        judged = {}
        for header, address in authors:
            key = address.lower()
            if key not in judged:
                try:
                    judged[key] = login in first_owners(key, self.maps, self.delimiter)[0]
                except TableError as exc:
                    return Verdict("defer", "the sender tables cannot be read now; try again later", str(exc))
            if not judged[key]:
                text = f"the {header} header's address <{address}> is not one that {login} may send as"
                return Verdict("refuse", text)
        return ACCEPT
