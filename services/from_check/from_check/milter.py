"""The milter: the filter's side of Postfix's milter protocol (version 6), on asyncio.

The check needs little of the protocol: the login and the message's headers,
then one answer at the end of the headers. So the milter asks Postfix for
nothing else at negotiation (no connect, HELO, MAIL, RCPT, DATA or body
events), for no reply to each header, and for three macros with the end of
the headers: ``{auth_authen}``, ``i`` and ``{mail_addr}``. One thread serves every connection; every
packet a read brings is handled at once. In the load benchmark this costs
0.4 ms of CPU a message (36 us of it this module's Python, the rest the
event loop's system calls), where pymilter (libmilter, a thread a connection
and a Python callback a header) cost 0.8 ms (benchmarks/README.md).

The loop itself never waits on a verdict. At the end of a message's headers
its connection hands the headers to a thread pool, reads nothing more from
Postfix until the answer is written (Postfix sends nothing before it), and
the loop goes on serving every other connection. The verdict comes in two
steps on two pools: reading the headers (CPU only, bounded by
header_from.MAX_LENGTH) and asking the tables (which can hang: a hung store
or database). So a hung table holds only the sessions that need it, and a
header that is slow to read only its own session. Each step has a deadline
(``deadline``, 5 s by default, inside Postfix's milter timeouts of 10 s):
past it the message gets 451, whatever the thread is still doing.

A second socket (``local_socket``) serves Postfix's non_smtpd_milters: mail
that local users give sendmail, which carries no login. There a message whose
envelope sender is one of ``local_senders`` (the validation service's no-reply
address) may show only that sender's listed addresses in its author headers;
other local mail (root's) passes.

Signing. With ``dkim`` in the configuration, the messages these two sockets
pass are signed twice (RSA-SHA256 and Ed25519-SHA256, keyring.py), and two
more sockets may serve listeners that want only one of the two jobs:
``sign_socket`` (signing, no From check) and ``check_socket`` (the check, no
signing). A signing connection asks Postfix for the body too (without a reply
to each chunk) and for leave to insert headers: after an accepted end of
headers it answers "continue", hashes the body as it comes, and at the end of
the message inserts the two DKIM-Signature headers at the top and accepts. The
loop signs at once a message whose signed headers are small (nearly all: a
thread hop cost more than the signing's Python, INLINE_SIGNED_BYTES); bigger
ones are signed in a thread, under the deadline. A message that cannot be
signed (no active key, an unreadable key file, no answer within the deadline)
gets 451: nothing leaves unsigned.

Limits. With ``limits`` in the configuration (the ratelimit role's file),
every socket but the local one counts each login's messages and recipients
(limits.py): it asks Postfix for each recipient (no reply to any) and for
``{daemon_name}``, which names the listener; after an accepted end of headers
it answers "continue" and charges the message at its end (after signing), so
that a message cut off or deferred counts nothing. ``count_socket`` counts and
does nothing else (a listener with both jobs off).

The packets, from libmilter's mfdef.h: a 4-byte length in network order, a
command byte, its data. Strings are NUL-terminated.
"""

from __future__ import annotations

import asyncio
import collections
import os
import struct
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import ClassVar

from ansible_collections.mailops.submission.plugins.module_utils.dkim_rules import (
    MAX_SIGNED_COPIES,
    OVERSIGNED,
    SIGNED_HEADERS,
)

from from_check.check import ACCEPT as JUDGED
from from_check.check import UNJUDGED, FromCheck, Verdict
from from_check.dkim_sign import BodyHasher, HeaderChoice, SigningError, sign
from from_check.header_from import AUTHOR_HEADERS, MAX_RESENT, FromError, header_mailbox
from from_check.keyring import Keyring
from from_check.limits import Limits

VERSION = 6
# Actions: the check changes nothing in a message and only names its macros;
# signing inserts headers.
SMFIF_ADDHDRS, SMFIF_SETSYMLIST = 0x1, 0x100
# Protocol steps Postfix leaves out, and the header events it expects no reply to.
SMFIP_NOCONNECT, SMFIP_NOHELO, SMFIP_NOMAIL, SMFIP_NORCPT = 0x1, 0x2, 0x4, 0x8
SMFIP_NOBODY, SMFIP_NR_HDR, SMFIP_NOUNKNOWN, SMFIP_NODATA = 0x10, 0x80, 0x100, 0x200
SMFIP_NR_RCPT, SMFIP_NR_BODY = 0x8000, 0x80000
STEPS = (
    SMFIP_NOCONNECT
    | SMFIP_NOHELO
    | SMFIP_NOMAIL
    | SMFIP_NORCPT
    | SMFIP_NOBODY
    | SMFIP_NR_HDR
    | SMFIP_NOUNKNOWN
    | SMFIP_NODATA
)
# The macros it asks for at the end of the headers (stage SMFIM_EOH); a
# counting connection also asks which listener took the message (Postfix's
# milter_macro_daemon_name, which submission_mta sets to the listener's name).
SMFIM_EOH = 6
EOH_MACROS = b"{auth_authen} i {mail_addr}"
COUNTING_MACROS = b" {daemon_name}"
# Postfix's commands and the milter's replies.
OPTNEG, MACRO, HEADER, EOH, ABORT, QUIT, QUIT_NEW_CONNECTION = b"O", b"D", b"L", b"N", b"A", b"Q", b"K"
RCPT = b"R"
BODY, END_OF_MESSAGE = b"B", b"E"
ACCEPT, CONTINUE, REPLYCODE, INSHEADER = b"a", b"c", b"y", b"i"
# A header comes whole in one packet, and Postfix lets a header grow to
# header_size_limit (100 kB by default); anything past 1 MB is not Postfix.
MAX_PACKET = 1 << 20
LENGTH = struct.Struct("!I")

REPLIES = {"refuse": "550 5.7.1", "defer": "451 4.3.0"}
AUTHOR_NAMES = frozenset(name.encode() for name in AUTHOR_HEADERS)
SIGNED_NAMES = frozenset(name.encode() for name in SIGNED_HEADERS)
# The signed headers a message may bring (their copies past MAX_SIGNED_COPIES
# are not kept): past it the message is deferred, not signed in part.
MAX_SIGNED_BYTES = 1 << 20
# Up to this many bytes of signed headers (most messages: a few kB), the loop
# signs at once: handing the message to the signing thread and its answer back
# cost more CPU than canonicalizing the headers (benchmarks/milter_signing.py,
# quiet A/B: signing added 0.03-0.41 ms less of the milter's CPU a message).
# Bigger headers are signed in a thread under the deadline, so that their
# canonicalization holds no one else.
INLINE_SIGNED_BYTES = 32 << 10
UNSIGNABLE = "this message cannot be signed now; try again later"


class ProtocolError(Exception):
    pass


def packet(command, data=b""):
    return LENGTH.pack(len(data) + 1) + command + data


def negotiation_reply(offered_actions, offered_steps, signing=False, counting=False):
    """Our options, within what Postfix offered; the macro list after them."""
    steps = STEPS
    if signing:  # the body, with no reply to any chunk of it
        steps = steps & ~SMFIP_NOBODY | SMFIP_NR_BODY
    if counting:  # each recipient, with no reply to any
        steps = steps & ~SMFIP_NORCPT | SMFIP_NR_RCPT
    actions = SMFIF_SETSYMLIST | (SMFIF_ADDHDRS if signing else 0)
    if offered_steps & steps != steps:
        raise ProtocolError(f"Postfix offers protocol steps {offered_steps:#x}, lacking {steps & ~offered_steps:#x}")
    if offered_actions & actions != actions:
        raise ProtocolError(f"Postfix offers actions {offered_actions:#x}, lacking {actions & ~offered_actions:#x}")
    options = struct.pack("!III", VERSION, actions, steps)
    macros = EOH_MACROS + (COUNTING_MACROS if counting else b"")
    return packet(OPTNEG, options + struct.pack("!I", SMFIM_EOH) + macros + b"\0")


def reply_text(text):
    """A reply line Postfix takes as it is: ASCII, one line."""
    return " ".join(text.encode("ascii", "backslashreplace").decode().split())[:400]


@dataclass(frozen=True)
class Mode:
    """What a socket's connections do: ``check`` the author headers of
    submissions ("smtpd"), of local mail ("local"), or not at all (None);
    ``sign`` or not; ``count`` the login's messages and recipients against its
    limits or not (submissions only: local mail has no login)."""

    check: str | None = "smtpd"
    sign: bool = False
    count: bool = False


@dataclass
class Message:
    """What the end of a message's headers asks to be judged."""

    login: str | None
    headers: dict
    queue_id: str
    # Local mail (the non_smtpd_milters socket): judged by its envelope sender.
    local: bool = False
    sender: str = ""
    check: bool = True
    # Counted against the login's limits: its recipients, the listener that took it.
    count: bool = False
    recipients: int = 0
    listener: str = ""


@dataclass
class Signing:
    """A message being signed: its signed headers, its body's hash so far."""

    headers: list
    # Names whose copies passed MAX_SIGNED_COPIES: signed without an oversigned copy.
    crowded: frozenset
    queue_id: str
    login: str | None
    hasher: BodyHasher
    too_large: bool = False
    # The From check judged the author headers: the From domain may sign (aligned).
    aligned: bool = False
    # Small enough to sign on the loop (INLINE_SIGNED_BYTES).
    inline: bool = False


@dataclass
class Ending:
    """The end of a message whose headers passed: its signatures to make, its
    count to charge (the Message, when its login's limits count it), or both."""

    signing: Signing | None
    charge: Message | None


class Judge:
    """The verdicts of every connection, off the loop: a pool that reads
    headers, a pool that asks the tables, a deadline for each message."""

    def __init__(self, check, deadline=5.0, lookup_threads=8, keyring=None, limits=None):
        self.check = check
        self.keyring = keyring
        # The per-login limits (limits.Limits), or None: nothing counted.
        self.limits = limits
        self.deadline = deadline
        self.readers = ThreadPoolExecutor(2, thread_name_prefix="read")
        self.lookups = ThreadPoolExecutor(lookup_threads, thread_name_prefix="lookup")

    async def verdict(self, message):
        if not message.check:
            return UNJUDGED
        try:
            async with asyncio.timeout(self.deadline):
                return await self.judged(message)
        except TimeoutError:
            return Verdict("defer", "the From check took too long; try again later", f"no verdict in {self.deadline} s")
        except Exception as exc:  # fail closed, and say why in the log
            return Verdict("defer", "the sender tables cannot be read now; try again later", repr(exc))

    async def judged(self, message):
        """verdict()'s reading and judging, in the readers' thread (a header
        slow to parse holds only its own message). A From that the lmdb tables
        let through at its first key is judged there too (read_judged); the
        rest goes on to the lookup threads: one thread hop a message saved for
        the usual case (benchmarks/milter_signing.py)."""
        loop = asyncio.get_running_loop()
        try:
            if message.local:
                read = await loop.run_in_executor(self.readers, self.check.read_local, message.sender, message.headers)
            else:
                read = await loop.run_in_executor(self.readers, self.check.read_judged, message.login, message.headers)
        except Exception as exc:  # a parser's fault refuses the header, as a defect does
            return Verdict("refuse", "the author headers cannot be read", repr(exc))
        if isinstance(read, Verdict):
            return read
        return await loop.run_in_executor(self.lookups, self.check.judge, message.login, read)

    async def signatures(self, signing):
        """The DKIM-Signature values for a message, or the Verdict that defers it.
        Small headers with the keys already read sign on the loop; a manifest to
        read again (its RSA keys checked as they load: milliseconds each) goes to
        the thread with the big headers, so that it holds no other session."""
        if signing.inline and (self.keyring is None or self.keyring.fresh()):
            return self.signatures_now(signing)
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.deadline):
                return await loop.run_in_executor(self.readers, self.signatures_now, signing)
        except TimeoutError:
            return Verdict("defer", UNSIGNABLE, f"no signature in {self.deadline} s")
        except Exception as exc:  # the pool itself failed: deferred, never sent unsigned
            return Verdict("defer", UNSIGNABLE, repr(exc))

    def signatures_now(self, signing):
        """signatures() on the caller's thread: on the loop for headers up to
        INLINE_SIGNED_BYTES with the keys read, else in the signing thread."""
        try:
            return self.sign(signing)
        except SigningError as exc:
            return Verdict("defer", UNSIGNABLE, str(exc))
        except Exception as exc:  # fail closed: deferred, never sent unsigned
            return Verdict("defer", UNSIGNABLE, repr(exc))

    def sign(self, signing):
        if self.keyring is None:
            raise SigningError("no key manifest configured")
        if signing.too_large:
            raise SigningError(f"the headers to sign pass {MAX_SIGNED_BYTES} bytes")
        domain = None  # the provider's domain signs: not judged, or no readable From
        if signing.aligned:
            from_values = [value for name, value in signing.headers if name.lower() == b"from"]
            try:
                address = header_mailbox([value.decode("utf-8", "surrogateescape") for value in from_values])
                domain = address.rpartition("@")[2]
            except FromError:
                pass
        keys = self.keyring.signing_keys(domain)
        choice = HeaderChoice(SIGNED_HEADERS, tuple(name for name in OVERSIGNED if name not in signing.crowded))
        return sign(keys, signing.headers, signing.hasher.digest(), choice)

    def close(self):
        if self.limits is not None:
            self.limits.close()
        self.readers.shutdown(wait=False, cancel_futures=True)
        self.lookups.shutdown(wait=False, cancel_futures=True)


def decide(verdict, login):
    """The reply packet at the end of the headers, and the line to log (or None)."""
    if verdict.action == "accept":
        return packet(ACCEPT), None
    reply = f"{verdict.reply or REPLIES[verdict.action]} {reply_text(verdict.text)}"
    log = f"{verdict.action} login={login or '-'}: {verdict.text}" + (f" ({verdict.detail})" if verdict.detail else "")
    return packet(REPLYCODE, reply.encode() + b"\0"), log


def macros_of(data):
    """The name -> value pairs of a macro packet (after its stage byte)."""
    fields = data[1:].split(b"\0")
    return {fields[i].decode(): fields[i + 1].decode("utf-8", "replace") for i in range(0, len(fields) - 1, 2)}


class Session:
    """One connection from Postfix: many messages, each its headers then one
    answer, or (signing) its headers, an answer, its body and a last answer."""

    def __init__(self, mode=Mode()):
        self.mode = mode
        self.macros = {}
        self.headers = {}
        self.signed = {}
        self.signed_bytes = 0
        self.recipients = 0
        # The message being signed, from its accepted end of headers to its end.
        self.signing = None
        # The message to count at its end (Message), once its headers passed.
        self.charge = None

    def handle(self, command, data):
        """The reply packet for one command, None when none is expected, the
        Message to judge at the end of the headers, or the Signing to finish at
        the end of a message."""
        handler = self.HANDLERS.get(command)
        # A step it asked not to get: go on, as libmilter does.
        return handler(self, data) if handler else packet(CONTINUE)

    def recipient(self, data):
        self.recipients += 1

    def body(self, data):
        if self.signing is not None:
            self.signing.hasher.update(data)

    def header(self, data):
        name, _, rest = data.partition(b"\0")
        key = name.lower()
        # One more than author_addresses reads: enough for it to refuse
        # the message, and a session's memory bounded however many come.
        values = self.headers.setdefault(key.decode(), []) if key in AUTHOR_NAMES else None
        if values is not None and len(values) <= MAX_RESENT:
            values.append(rest.rstrip(b"\0").decode("utf-8", "surrogateescape"))
        if self.mode.sign and key in SIGNED_NAMES:
            self.keep_signed(name, rest.rstrip(b"\0"))

    def macro(self, data):
        self.macros.update(macros_of(data))

    def end_of_message(self, data):
        signing, self.signing = self.signing, None
        charge, self.charge = self.charge, None
        if signing is None and self.mode.sign:
            # A signing socket never lets a message it did not sign go (fail closed).
            return packet(REPLYCODE, f"451 4.3.0 {UNSIGNABLE}".encode() + b"\0")
        if signing is None and charge is None:
            return packet(ACCEPT)
        if signing is not None and data:
            signing.hasher.update(data)
        return Ending(signing, charge)

    def abort(self, data):
        self.reset()
        self.signing = None
        self.charge = None

    def negotiate(self, data):
        if len(data) < 12:
            raise ProtocolError("short option negotiation")
        _, actions, steps = struct.unpack("!III", data[:12])
        return negotiation_reply(actions, steps, self.mode.sign, self.mode.count)

    def keep_signed(self, name, value):
        """The last MAX_SIGNED_COPIES copies of a signed header, and how much they weigh."""
        copies = self.signed.setdefault(name.lower(), [0, collections.deque(maxlen=MAX_SIGNED_COPIES)])
        copies[0] += 1
        copies[1].append((name, value))
        self.signed_bytes += len(name) + len(value)

    def end_of_headers(self, data=b""):
        if self.mode.sign:
            headers = [copy for _, copies in self.signed.values() for copy in copies]
            crowded = frozenset(name.decode() for name, (count, _) in self.signed.items() if count > MAX_SIGNED_COPIES)
            too_large = self.signed_bytes > MAX_SIGNED_BYTES
            queue_id, login = self.macros.get("i", "-"), self.macros.get("{auth_authen}")
            inline = self.signed_bytes <= INLINE_SIGNED_BYTES
            self.signing = Signing(headers, crowded, queue_id, login, BodyHasher(), too_large, inline=inline)
        message = Message(
            self.macros.get("{auth_authen}"),
            self.headers,
            self.macros.get("i", "-"),
            self.mode.check == "local",
            self.macros.get("{mail_addr}", ""),
            self.mode.check is not None,
            self.mode.count,
            self.recipients,
            self.macros.get("{daemon_name}", ""),
        )
        self.reset()
        return message

    def reset(self):
        # Postfix sends the macros again with the next message's end of headers.
        self.headers = {}
        self.macros = {}
        self.signed = {}
        self.signed_bytes = 0
        self.recipients = 0

    HANDLERS: ClassVar[dict] = {
        RCPT: recipient,
        BODY: body,
        HEADER: header,
        MACRO: macro,
        EOH: end_of_headers,
        END_OF_MESSAGE: end_of_message,
        ABORT: abort,
        QUIT_NEW_CONNECTION: abort,
        OPTNEG: negotiate,
    }


class MilterConnection(asyncio.Protocol):
    """One connection from Postfix: every complete packet a read brings is
    handled at once and the replies go out in one write; at the end of a
    message's headers, the packets after it wait for the verdict."""

    def __init__(self, judge, mode=Mode()):
        self.judge = judge
        self.session = Session(mode)
        self.buffer = bytearray()
        self.transport = None
        self.waiting = None

    def connection_made(self, transport):
        self.transport = transport

    def connection_lost(self, exc):
        if self.waiting is not None:
            self.waiting.cancel()

    def data_received(self, data):
        self.buffer += data
        if self.waiting is None:
            self.handle_buffer()

    def handle_buffer(self):
        replies = []
        try:
            while len(self.buffer) >= LENGTH.size:
                length = LENGTH.unpack_from(self.buffer)[0]
                if not 0 < length <= MAX_PACKET:
                    raise ProtocolError(f"a packet of {length} bytes")
                end = LENGTH.size + length
                if len(self.buffer) < end:
                    break
                command, data = bytes(self.buffer[4:5]), bytes(self.buffer[5:end])
                del self.buffer[:end]
                if command == QUIT:
                    self.transport.close()
                    break
                reply = self.session.handle(command, data)
                if isinstance(reply, Message):
                    self.waiting = asyncio.ensure_future(self.answer(reply))
                    break
                if isinstance(reply, Ending):
                    self.waiting = asyncio.ensure_future(self.finish(reply))
                    break
                if reply is not None:
                    replies.append(reply)
        except ProtocolError as exc:
            print(f"from-check: dropping a connection: {exc}", file=sys.stderr, flush=True)
            self.transport.close()
        self.write(replies)

    def write(self, replies):
        if replies and not self.transport.is_closing():
            self.transport.write(b"".join(replies))

    async def answer(self, message):
        verdict = await self.judge.verdict(message)
        reply, log = decide(verdict, f"local sender={message.sender or '<>'}" if message.local else message.login)
        if log:
            print(f"{message.queue_id}: {log}", file=sys.stderr, flush=True)
        limits = self.judge.limits
        # Counted at the end of the message, only when its headers passed: a
        # message refused here, or that never ends (cut off, too big), counts nothing.
        counted = verdict.action == "accept" and message.count and limits is not None
        counted = counted and limits.counts(message.login, message.listener)
        if verdict.action == "accept" and (self.session.signing is not None or counted):
            reply = packet(CONTINUE)  # the body (when signing) and the end of the message come next
            if self.session.signing is not None:
                # Only a From the check judged for this login signs with its own domain.
                self.session.signing.aligned = verdict is JUDGED
            self.session.charge = message if counted else None
        else:
            self.session.signing = None
        self.resume([reply])

    async def finish(self, ending):
        """The end of a message: its signatures at the top, then its count
        charged; 451 when it cannot be signed, the limit's reply over one."""
        inserts = []
        if ending.signing is not None:
            values = await self.judge.signatures(ending.signing)
            if isinstance(values, Verdict):
                self.refuse(values, ending.signing.login, ending.signing.queue_id)
                return
            # Index 0 is the top: the last inserted ends first, so RSA's is read first.
            inserts = [
                packet(INSHEADER, struct.pack("!I", 0) + b"DKIM-Signature\0" + value.encode() + b"\0")
                for value in reversed(values)
            ]
        if ending.charge is not None:
            message = ending.charge
            held = await self.judge.limits.check(message.login, message.recipients, message.listener, message.queue_id)
            if held is not None:
                self.refuse(held, message.login, message.queue_id)
                return
        self.resume([*inserts, packet(ACCEPT)])

    def refuse(self, verdict, login, queue_id):
        reply, log = decide(verdict, login)
        print(f"{queue_id}: {log}", file=sys.stderr, flush=True)
        self.resume([reply])

    def resume(self, replies):
        self.waiting = None
        self.write(replies)
        if not self.transport.is_closing():
            self.handle_buffer()


async def serve(config, ready=None, stop=None):
    """Serve until stopped; ready and stop are threading.Events, for a caller in another thread."""
    dkim = config.get("dkim")
    keyring = Keyring(dkim["manifest"]) if dkim else None
    if keyring is not None:
        # The keys are read before the first message, not by it.
        try:
            keyring.current()
        except SigningError as exc:
            print(f"from-check: nothing can be signed yet: {exc}", file=sys.stderr, flush=True)
    limits = Limits(config["limits"]) if config.get("limits") else None
    if limits is not None:
        limits.current(asyncio.get_running_loop().time())
    judge = Judge(
        FromCheck.from_config(config), config.get("deadline", 5), config.get("lookup_threads", 8), keyring, limits
    )
    signing, counting = keyring is not None, limits is not None
    modes = {
        "socket": Mode("smtpd", signing, counting),
        "local_socket": Mode("local", signing),
        "sign_socket": Mode(None, True, counting),
        "check_socket": Mode("smtpd", False, counting),
        "count_socket": Mode(None, False, counting),
    }
    servers = []
    try:
        for name, mode in modes.items():
            if config.get(name):
                path = config[name].removeprefix("unix:")
                if os.path.exists(path):
                    os.unlink(path)
                servers.append(
                    await asyncio.get_running_loop().create_unix_server(
                        lambda mode=mode: MilterConnection(judge, mode), path=path
                    )
                )
        if ready is not None:
            ready.set()
        if stop is None:
            await asyncio.gather(*(server.serve_forever() for server in servers))
        else:
            while not stop.is_set():
                await asyncio.sleep(0.05)
    finally:
        for server in servers:
            server.close()
        judge.close()


def run(config):
    asyncio.run(serve(config))
