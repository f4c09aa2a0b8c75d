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

The packets, from libmilter's mfdef.h: a 4-byte length in network order, a
command byte, its data. Strings are NUL-terminated.
"""

from __future__ import annotations

import asyncio
import os
import struct
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from from_check.check import FromCheck, Verdict
from from_check.header_from import AUTHOR_HEADERS, MAX_RESENT

VERSION = 6
# Actions: the milter changes nothing in a message; it only names its macros.
SMFIF_SETSYMLIST = 0x100
# Protocol steps Postfix leaves out, and the header events it expects no reply to.
SMFIP_NOCONNECT, SMFIP_NOHELO, SMFIP_NOMAIL, SMFIP_NORCPT = 0x1, 0x2, 0x4, 0x8
SMFIP_NOBODY, SMFIP_NR_HDR, SMFIP_NOUNKNOWN, SMFIP_NODATA = 0x10, 0x80, 0x100, 0x200
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
# The macros it asks for at the end of the headers (stage SMFIM_EOH).
SMFIM_EOH = 6
EOH_MACROS = b"{auth_authen} i {mail_addr}"
# Postfix's commands and the milter's replies.
OPTNEG, MACRO, HEADER, EOH, ABORT, QUIT, QUIT_NEW_CONNECTION = b"O", b"D", b"L", b"N", b"A", b"Q", b"K"
ACCEPT, CONTINUE, REPLYCODE = b"a", b"c", b"y"
# A header comes whole in one packet, and Postfix lets a header grow to
# header_size_limit (100 kB by default); anything past 1 MB is not Postfix.
MAX_PACKET = 1 << 20
LENGTH = struct.Struct("!I")

REPLIES = {"refuse": "550 5.7.1", "defer": "451 4.3.0"}
AUTHOR_NAMES = frozenset(name.encode() for name in AUTHOR_HEADERS)


class ProtocolError(Exception):
    pass


def packet(command, data=b""):
    return LENGTH.pack(len(data) + 1) + command + data


def negotiation_reply(offered_actions, offered_steps):
    """Our options, within what Postfix offered; the macro list after them."""
    if offered_steps & STEPS != STEPS:
        raise ProtocolError(f"Postfix offers protocol steps {offered_steps:#x}, lacking {STEPS & ~offered_steps:#x}")
    options = struct.pack("!III", VERSION, offered_actions & SMFIF_SETSYMLIST, STEPS)
    return packet(OPTNEG, options + struct.pack("!I", SMFIM_EOH) + EOH_MACROS + b"\0")


def reply_text(text):
    """A reply line Postfix takes as it is: ASCII, one line."""
    return " ".join(text.encode("ascii", "backslashreplace").decode().split())[:400]


@dataclass
class Message:
    """What the end of a message's headers asks to be judged."""

    login: str | None
    headers: dict
    queue_id: str
    # Local mail (the non_smtpd_milters socket): judged by its envelope sender.
    local: bool = False
    sender: str = ""


class Judge:
    """The verdicts of every connection, off the loop: a pool that reads
    headers, a pool that asks the tables, a deadline for each message."""

    def __init__(self, check, deadline=5.0, lookup_threads=8):
        self.check = check
        self.deadline = deadline
        self.readers = ThreadPoolExecutor(2, thread_name_prefix="read")
        self.lookups = ThreadPoolExecutor(lookup_threads, thread_name_prefix="lookup")

    async def verdict(self, message):
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.deadline):
                try:
                    if message.local:
                        read = await loop.run_in_executor(
                            self.readers, self.check.read_local, message.sender, message.headers
                        )
                    else:
                        read = await loop.run_in_executor(self.readers, self.check.read, message.login, message.headers)
                except Exception as exc:  # a parser's fault refuses the header, as a defect does
                    return Verdict("refuse", "the author headers cannot be read", repr(exc))
                if isinstance(read, Verdict):
                    return read
                return await loop.run_in_executor(self.lookups, self.check.judge, message.login, read)
        except TimeoutError:
            return Verdict("defer", "the From check took too long; try again later", f"no verdict in {self.deadline} s")
        except Exception as exc:  # fail closed, and say why in the log
            return Verdict("defer", "the sender tables cannot be read now; try again later", repr(exc))

    def close(self):
        self.readers.shutdown(wait=False, cancel_futures=True)
        self.lookups.shutdown(wait=False, cancel_futures=True)


def decide(verdict, login):
    """The reply packet at the end of the headers, and the line to log (or None)."""
    if verdict.action == "accept":
        return packet(ACCEPT), None
    reply = f"{REPLIES[verdict.action]} {reply_text(verdict.text)}"
    log = f"{verdict.action} login={login or '-'}: {verdict.text}" + (f" ({verdict.detail})" if verdict.detail else "")
    return packet(REPLYCODE, reply.encode() + b"\0"), log


def macros_of(data):
    """The name -> value pairs of a macro packet (after its stage byte)."""
    fields = data[1:].split(b"\0")
    return {fields[i].decode(): fields[i + 1].decode("utf-8", "replace") for i in range(0, len(fields) - 1, 2)}


class Session:
    """One connection from Postfix: many messages, each its headers then one answer."""

    def __init__(self, local=False):
        self.local = local
        self.macros = {}
        self.headers = {}

    def handle(self, command, data):
        """The reply packet for one command, None when none is expected, or
        the Message to judge at the end of the headers."""
        if command == HEADER:
            name, _, rest = data.partition(b"\0")
            name = name.lower()
            # One more than author_addresses reads: enough for it to refuse
            # the message, and a session's memory bounded however many come.
            values = self.headers.setdefault(name.decode(), []) if name in AUTHOR_NAMES else None
            if values is not None and len(values) <= MAX_RESENT:
                values.append(rest.rstrip(b"\0").decode("utf-8", "surrogateescape"))
            return None
        if command == MACRO:
            self.macros.update(macros_of(data))
            return None
        if command == EOH:
            message = Message(
                self.macros.get("{auth_authen}"),
                self.headers,
                self.macros.get("i", "-"),
                self.local,
                self.macros.get("{mail_addr}", ""),
            )
            self.reset()
            return message
        if command in (ABORT, QUIT_NEW_CONNECTION):
            self.reset()
            return None
        if command == OPTNEG:
            if len(data) < 12:
                raise ProtocolError("short option negotiation")
            _, actions, steps = struct.unpack("!III", data[:12])
            return negotiation_reply(actions, steps)
        # A step it asked not to get: go on, as libmilter does.
        return packet(CONTINUE)

    def reset(self):
        # Postfix sends the macros again with the next message's end of headers.
        self.headers = {}
        self.macros = {}


class MilterConnection(asyncio.Protocol):
    """One connection from Postfix: every complete packet a read brings is
    handled at once and the replies go out in one write; at the end of a
    message's headers, the packets after it wait for the verdict."""

    def __init__(self, judge, local=False):
        self.judge = judge
        self.session = Session(local)
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
        self.waiting = None
        self.write([reply])
        if not self.transport.is_closing():
            self.handle_buffer()


async def serve(config, ready=None, stop=None):
    """Serve until stopped; ready and stop are threading.Events, for a caller in another thread."""
    judge = Judge(FromCheck.from_config(config), config.get("deadline", 5), config.get("lookup_threads", 8))
    servers = []
    try:
        for name, local in (("socket", False), ("local_socket", True)):
            if config.get(name):
                path = config[name].removeprefix("unix:")
                if os.path.exists(path):
                    os.unlink(path)
                servers.append(
                    await asyncio.get_running_loop().create_unix_server(
                        lambda local=local: MilterConnection(judge, local), path=path
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
