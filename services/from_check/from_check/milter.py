"""The milter: the filter's side of Postfix's milter protocol (version 6), on asyncio.

The check needs little of the protocol: the login and the message's headers,
then one answer at the end of the headers. So the milter asks Postfix for
nothing else at negotiation (no connect, HELO, MAIL, RCPT, DATA or body
events), for no reply to each header, and for one macro, ``{auth_authen}``,
with the end of the headers. One thread serves every connection; every
packet a read brings is handled at once. In the load benchmark this costs
0.4 ms of CPU a message (36 us of it this module's Python, the rest the
event loop's system calls), where pymilter (libmilter, a thread a connection
and a Python callback a header) cost 0.8 ms (benchmarks/README.md).

A lookup runs in the loop: the lmdb tables are memory-mapped, and the store's
socketmap answers in microseconds or, if it hangs, gives up after
``store_timeout`` seconds (2), well inside Postfix's milter timeouts (10 s),
so that a hung store defers messages rather than holding the milter.

The packets, from libmilter's mfdef.h: a 4-byte length in network order, a
command byte, its data. Strings are NUL-terminated.
"""

from __future__ import annotations

import asyncio
import os
import struct
import sys

from from_check.check import FromCheck

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
EOH_MACROS = b"{auth_authen} i"
# Postfix's commands and the milter's replies.
OPTNEG, MACRO, HEADER, EOH, ABORT, QUIT, QUIT_NEW_CONNECTION = b"O", b"D", b"L", b"N", b"A", b"Q", b"K"
ACCEPT, CONTINUE, REPLYCODE = b"a", b"c", b"y"
# A header comes whole in one packet, and Postfix lets a header grow to
# header_size_limit (100 kB by default); anything past 1 MB is not Postfix.
MAX_PACKET = 1 << 20
LENGTH = struct.Struct("!I")

REPLIES = {"refuse": "550 5.7.1", "defer": "451 4.3.0"}


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


def decide(check, login, from_values):
    """The reply packet at the end of the headers, and the line to log (or None)."""
    verdict = check.verdict(login, from_values)
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

    def __init__(self, check):
        self.check = check
        self.macros = {}
        self.from_values = []

    def handle(self, command, data):
        """The reply packet for one command, or None when none is expected."""
        if command == HEADER:
            name, _, rest = data.partition(b"\0")
            if name.lower() == b"from":
                self.from_values.append(rest.rstrip(b"\0").decode("utf-8", "surrogateescape"))
            return None
        if command == MACRO:
            self.macros.update(macros_of(data))
            return None
        if command == EOH:
            reply, log = decide(self.check, self.macros.get("{auth_authen}"), self.from_values)
            if log:
                print(f"{self.macros.get('i', '-')}: {log}", file=sys.stderr, flush=True)
            self.reset()
            return reply
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
        self.from_values = []
        self.macros = {}


class MilterConnection(asyncio.Protocol):
    """One connection from Postfix: every complete packet a read brings is
    handled at once, and the replies go out in one write."""

    def __init__(self, check):
        self.session = Session(check)
        self.buffer = bytearray()
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.buffer += data
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
                if reply is not None:
                    replies.append(reply)
        except ProtocolError as exc:
            print(f"from-check: dropping a connection: {exc}", file=sys.stderr, flush=True)
            self.transport.close()
        if replies and not self.transport.is_closing():
            self.transport.write(b"".join(replies))


async def serve(config, ready=None, stop=None):
    """Serve until stopped; ready and stop are threading.Events, for a caller in another thread."""
    check = FromCheck.from_config(config)
    path = config["socket"].removeprefix("unix:")
    if os.path.exists(path):
        os.unlink(path)
    server = await asyncio.get_running_loop().create_unix_server(lambda: MilterConnection(check), path=path)
    async with server:
        if ready is not None:
            ready.set()
        if stop is None:
            await server.serve_forever()
        else:
            while not stop.is_set():
                await asyncio.sleep(0.05)


def run(config):
    asyncio.run(serve(config))
