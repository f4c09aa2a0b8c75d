"""Per-login limits, counted in the counter store (Redis) by one script call a message.

The rule (which limits a login has, the replies over one) is the shared
library's (login_limits); this module keeps the counts. Each login has one
hash in Redis, ``limits:<login>``, holding for each of its limits how many
messages or recipients are still counted against it, and the time of that
count (``t``). A count drains at the limit's pace: a limit of N an hour lets
N go at once, then one more every 3600/N seconds (a leaky bucket; a limit
raised counts what was sent against the new number at once). One Lua script
call drains every count of the login to now, checks the message and its
recipients against each and, only when none is passed, charges them all:
atomic, so MTAs of a fleet sharing the store count together, and a message
held counts nothing. Redis's own clock keeps the time, so the MTAs' clocks
need not agree.

The client is this module's own, not redis-py: one connection on the
milter's event loop, calls pipelined on it, a call encoded and its reply
parsed in a few lines (benchmarks/limit_counter.py measures it against
redis-py's asyncio and blocking clients, side by side).

The store cannot be reached (down, slow past ``timeout``): the message goes on
uncounted and the milter logs it, or, with ``unreachable: defer``, gets 451.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import json
import os
import ssl
import sys
from dataclasses import dataclass, field

from ansible_collections.mailops.submission.plugins.module_utils.login_limits import (
    LimitError,
    counted_login,
    limit_reply,
    limit_table,
    limits_of,
    over_limit_reply,
)

from from_check.check import Verdict

# KEYS[1]: the login's hash. ARGV[1]: the message's recipients; then, for each
# limit, its name, number, seconds and what it counts ("m" or "r"). Returns
# {0, 0} (charged), {n, seconds until it fits} for the first limit n (from 1)
# the message would pass, or {n, -1} when the message alone passes it.
SCRIPT = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local recipients = tonumber(ARGV[1])
local names = {'t'}
for i = 2, #ARGV, 4 do names[#names + 1] = ARGV[i] end
local held = redis.call('HMGET', KEYS[1], unpack(names))
local elapsed = math.max(now - (tonumber(held[1]) or now), 0)
local updates, longest = {'t', string.format('%.6f', now)}, 0
for n = 1, #names - 1 do
  local i = 2 + (n - 1) * 4
  local limit, window = tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  local cost = 1
  if ARGV[i + 3] == 'r' then cost = recipients end
  if cost > limit then return {n, -1} end
  local level = math.max((tonumber(held[n + 1]) or 0) - elapsed * limit / window, 0)
  if level + cost > limit then
    return {n, math.ceil((level + cost - limit) * window / limit)}
  end
  updates[#updates + 1] = names[n + 1]
  updates[#updates + 1] = string.format('%.6f', level + cost)
  if window > longest then longest = window end
end
if longest > 0 then
  redis.call('HSET', KEYS[1], unpack(updates))
  redis.call('EXPIRE', KEYS[1], math.ceil(longest))
end
return {0, 0}
"""
# Redis names a script by its SHA-1.
SCRIPT_SHA = hashlib.sha1(SCRIPT.encode(), usedforsecurity=False).hexdigest()
KEY_PREFIX = "limits:"
UNREACHABLE = ("accept", "defer")
# How often (seconds of the loop's clock) the limits file is looked at for a change.
RELOAD_EVERY = 1.0


# A call past this many in flight on one connection drops it: a store that
# takes questions and never answers holds no more of the milter's memory.
MAX_IN_FLIGHT = 1000


def key(login):
    """The login's hash in the counter store."""
    return KEY_PREFIX + counted_login(login)


class StoreError(Exception):
    """The counter store could not answer (closed, refused, an error reply)."""


class RespConnection(asyncio.Protocol):
    """One connection to Redis: commands written as they come, replies matched
    to them in order (Redis answers in order)."""

    def __init__(self):
        self.transport = None
        self.waiting = collections.deque()
        self.buffer = bytearray()

    def connection_made(self, transport):
        self.transport = transport

    def connection_lost(self, exc):
        while self.waiting:
            future = self.waiting.popleft()
            if not future.done():
                future.set_exception(StoreError(f"the counter store closed the connection ({exc or 'EOF'})"))

    def call(self, *args):
        if self.transport is None or self.transport.is_closing():
            raise StoreError("no connection to the counter store")
        parts = [b"*%d\r\n" % len(args)]
        for arg in args:
            data = arg if isinstance(arg, bytes) else str(arg).encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
        self.transport.write(b"".join(parts))
        future = asyncio.get_running_loop().create_future()
        self.waiting.append(future)
        return future

    def data_received(self, data):
        self.buffer += data
        while self.buffer:
            try:
                parsed = parse_reply(self.buffer, 0)
            except ValueError as exc:
                self.transport.close()
                self.connection_lost(exc)
                return
            if parsed is None:
                return
            value, end = parsed
            del self.buffer[:end]
            if self.waiting:
                future = self.waiting.popleft()
                if not future.done():
                    future.set_result(value)


def parse_reply(buffer, start):  # noqa: PLR0911 - a return for each kind of reply
    """(value, end) of the RESP2 reply at start, None when it is not all
    there yet; an error reply is a StoreError value. ValueError: not RESP."""
    end = buffer.find(b"\r\n", start)
    if end < 0:
        return None
    kind, line = buffer[start : start + 1], bytes(buffer[start + 1 : end])
    if kind == b":":
        return int(line), end + 2
    if kind == b"+":
        return line.decode(), end + 2
    if kind == b"-":
        return StoreError(line.decode("utf-8", "replace")), end + 2
    if kind == b"$":
        size = int(line)
        if size < 0:
            return None, end + 2
        if len(buffer) < end + 4 + size:
            return None
        return bytes(buffer[end + 2 : end + 2 + size]), end + 4 + size
    if kind == b"*":
        values, at = [], end + 2
        for _ in range(max(int(line), 0)):
            parsed = parse_reply(buffer, at)
            if parsed is None:
                return None
            values.append(parsed[0])
            at = parsed[1]
        return values, at
    raise ValueError(f"not a RESP reply: {bytes(buffer[start : start + 20])!r}")


@dataclass(frozen=True)
class StoreAddress:
    """Where the counter store is: a unix socket (one host), or a fleet's
    shared Redis over TLS (the server's name checked against ``ca_file``),
    this MTA's client certificate (``cert_file``, ``key_file``), a user and
    its password (ACL)."""

    path: str = ""
    host: str = ""
    port: int = 0
    ca_file: str = ""
    user: str = ""
    password: str = field(default="", repr=False)
    cert_file: str = ""
    key_file: str = ""

    def __str__(self):
        return self.path or f"{self.host}:{self.port}"


class CounterStore:
    """The Redis the limits are counted in; one connection, made again at
    the next call when it is lost."""

    def __init__(self, address, timeout=0.5):
        self.address = address if isinstance(address, StoreAddress) else StoreAddress(path=address)
        self.timeout = timeout
        self.connection = None
        self.connecting = None

    async def charge(self, login, recipients, limits):
        """(index of the limit passed or 0, seconds to wait) for one message."""
        args = [recipients]
        for name, value, counts, seconds in limits:
            args += [name, value, seconds, counts]
        try:
            async with asyncio.timeout(self.timeout):
                reply = await self.call("EVALSHA", SCRIPT_SHA, 1, key(login), *args)
                if isinstance(reply, StoreError) and str(reply).startswith("NOSCRIPT"):
                    # The store restarted, or never saw the script: it is sent once in full.
                    reply = await self.call("EVAL", SCRIPT, 1, key(login), *args)
        except TimeoutError:
            # Each call waits its own time, and the connection stays for the
            # calls behind it (a store slow for a moment answers them), unless
            # too many wait on it: then it goes, and the next call connects again.
            connection = self.connection
            if connection is not None and len(connection.waiting) > MAX_IN_FLIGHT:
                self.close()
            raise
        if isinstance(reply, StoreError):
            raise reply
        if not (isinstance(reply, list) and len(reply) == 2 and all(isinstance(each, int) for each in reply)):
            raise StoreError(f"the limits script answered {reply!r}")
        return reply[0], reply[1]

    async def call(self, *args):
        if self.connection is None or self.connection.transport.is_closing():
            await self.connect()
        connection = self.connection
        if connection is None:
            raise StoreError("no connection to the counter store")
        return await connection.call(*args)

    async def connect(self):
        # Concurrent callers wait for the one connection being made.
        if self.connecting is None:
            self.connecting = asyncio.ensure_future(self._connect())
        try:
            await asyncio.shield(self.connecting)
        finally:
            if self.connecting is not None and self.connecting.done():
                self.connecting = None

    async def _connect(self):
        loop, address, connection = asyncio.get_running_loop(), self.address, None
        try:
            async with asyncio.timeout(self.timeout):
                if address.path:
                    _, connection = await loop.create_unix_connection(RespConnection, address.path)
                else:
                    context = ssl.create_default_context(cafile=address.ca_file)
                    if address.cert_file:
                        context.load_cert_chain(address.cert_file, address.key_file or None)
                    _, connection = await loop.create_connection(
                        RespConnection, address.host, address.port, ssl=context, server_hostname=address.host
                    )
                if address.user:
                    reply = await connection.call("AUTH", address.user, address.password)
                    if reply != "OK":
                        # Redis's reply names no password; neither does this.
                        raise StoreError(f"the counter store at {address} refused user {address.user}: {reply}")
        except (OSError, TimeoutError, StoreError) as exc:
            # A connection made but not logged in (refused, or AUTH timed out) goes too.
            if connection is not None:
                connection.transport.close()
            if isinstance(exc, StoreError):
                raise
            reason = getattr(exc, "strerror", None) or str(exc) or "no answer in time"
            raise StoreError(f"cannot connect to the counter store at {address}: {reason}") from None
        self.connection = connection

    def close(self):
        connection, self.connection = self.connection, None
        if connection is not None and connection.transport is not None:
            connection.transport.close()


class Limits:
    """The limits file the ratelimit role writes, read again when it changes,
    and the store it names."""

    def __init__(self, path, log=None):
        self.path = path
        self.log = log or (lambda line: print(f"from-check: {line}", file=sys.stderr, flush=True))
        self.settings = None
        self.store = None
        self.stamp = None
        self.checked = None

    def current(self, now):
        """The settings, read again when the file changed (looked at every RELOAD_EVERY s)."""
        if self.checked is not None and now - self.checked < RELOAD_EVERY:
            return self.settings
        self.checked = now
        try:
            stat = os.stat(self.path)
            stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        except OSError as exc:
            stamp = None
            if self.stamp is not None or self.settings is None:
                self.log(f"no per-login limits counted: {self.path}: {exc.strerror}")
        if stamp == self.stamp:
            return self.settings
        self.stamp = stamp
        if stamp is None:
            self.settings = None
            return None
        try:
            self.settings = load_settings(self.path)
        except (OSError, ValueError) as exc:
            # The limits it had stay: a half-written or bad file loses no count.
            self.log(f"{exc}; the limits read before stay")
            return self.settings
        if self.store is None or self.store.address != self.settings["store"]:
            if self.store is not None:
                self.store.close()
            self.store = CounterStore(self.settings["store"], self.settings["timeout"])
        self.store.timeout = self.settings["timeout"]
        return self.settings

    def counts(self, login, listener):
        """Whether a message of this login on this listener is counted."""
        settings = self.current(asyncio.get_running_loop().time())
        return bool(settings and login and listener not in settings["uncounted_listeners"])

    async def check(self, login, recipients, listener, queue_id):
        """None when the message may go (counted), else the Verdict that holds it."""
        limits = limits_of(self.settings["table"], login) if self.counts(login, listener) else []
        if not limits:
            return None
        try:
            passed, wait = await self.store.charge(login, max(recipients, 1), limits)
        except (StoreError, TimeoutError, OSError) as exc:
            detail = str(exc) or "no answer in time"
            if self.settings["unreachable"] == "defer":
                return Verdict("defer", "the sending limits cannot be checked now; try again later", detail)
            self.log(f"{queue_id}: login={login} sent uncounted: the counter store cannot be reached ({detail})")
            return None
        return held(limits, passed, wait, recipients)

    def close(self):
        if self.store is not None:
            self.store.close()


def held(limits, passed, wait, recipients):
    """The Verdict for the script's answer: None (charged), the limit's 450,
    or 550 for a message that alone passes a limit (wait < 0)."""
    if not passed:
        return None
    name, value, _, _ = limits[passed - 1]
    if wait < 0:
        code, status, text = over_limit_reply(name, value).split(" ", 2)
        return Verdict("refuse", text, f"{name}={value}, {recipients} recipients", reply=f"{code} {status}")
    code, status, text = limit_reply(name, value).split(" ", 2)
    return Verdict("limit", text, f"{name}={value}, fits again in {wait} s", reply=f"{code} {status}")


def store_address(path, store):
    """The limits file's ``store``: a socket path, or {host, port, ca_file,
    cert_file, key_file, user, password_file} for a fleet's shared Redis over
    TLS (ca_file required: the server is checked against the fleet's CA, never
    the system's public ones)."""
    if isinstance(store, str) and store.startswith("/"):
        return StoreAddress(path=store)
    if not isinstance(store, dict):
        raise ValueError(f"{path}: store must be the counter store's socket path or a TLS address, not {store!r}")
    names = ("ca_file", "cert_file", "key_file", "user", "password_file")
    unknown = sorted(set(store) - {"host", "port", *names})
    if unknown:
        raise ValueError(f"{path}: store: unknown settings {unknown}")
    host, port = store.get("host"), store.get("port")
    if not isinstance(host, str) or not host or isinstance(port, bool) or not isinstance(port, int):
        raise ValueError(f"{path}: store needs a host name and a port number, not {host!r} and {port!r}")
    for name in names:
        if not isinstance(store.get(name, ""), str):
            raise ValueError(f"{path}: store: {name} must be a string, not {store[name]!r}")
    if not store.get("ca_file", "").startswith("/"):
        raise ValueError(f"{path}: store: ca_file must be the path of the CA that issued the server's certificate")
    password = ""
    if store.get("password_file"):
        try:
            with open(store["password_file"], encoding="utf-8") as handle:
                # The line's end only: a password may hold spaces.
                password = handle.read().rstrip("\r\n")
        except OSError as exc:
            raise ValueError(f"{path}: store: cannot read {store['password_file']}: {exc.strerror}") from None
    return StoreAddress(
        host=host,
        port=port,
        ca_file=store["ca_file"],
        user=store.get("user", ""),
        password=password,
        cert_file=store.get("cert_file", ""),
        key_file=store.get("key_file", ""),
    )


def load_settings(path):
    """The limits file, checked; ValueError naming what is wrong."""
    with open(path, encoding="utf-8") as handle:
        raw = json.load(handle)
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: not a JSON object")
    store, timeout = store_address(path, raw.get("store")), raw.get("timeout", 0.5)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise ValueError(f"{path}: timeout must be positive seconds, not {timeout!r}")
    if raw.get("unreachable", "accept") not in UNREACHABLE:
        raise ValueError(f"{path}: unreachable must be one of {UNREACHABLE}, not {raw.get('unreachable')!r}")
    uncounted = raw.get("uncounted_listeners", [])
    if not isinstance(uncounted, list) or not all(isinstance(each, str) for each in uncounted):
        raise ValueError(f"{path}: uncounted_listeners must be a list of listener names, not {uncounted!r}")
    try:
        table = limit_table(raw.get("default", {}), raw.get("logins", {}))
    except LimitError as exc:
        raise ValueError(f"{path}: {exc}") from None
    return {
        "store": store,
        "timeout": float(timeout),
        "unreachable": raw.get("unreachable", "accept"),
        "uncounted_listeners": frozenset(uncounted),
        "table": table,
    }


DEFAULT_LIMITS_FILE = "/etc/submission-limits/limits.json"
USAGE = """usage: submission-login-limits {show|clear} LOGIN [LIMITS_FILE]

show: a login's limits and what is counted against each now, as JSON;
clear: forget its counts, so that it may send its limits again at once.
The counter store is the one the milter counts in, named by LIMITS_FILE
($SUBMISSION_LIMITS_FILE, else /etc/submission-limits/limits.json): one
host's Redis, or a fleet's (docs/operations.md)."""


async def _operate(action, login, path):
    settings = load_settings(path)
    store = CounterStore(settings["store"], max(settings["timeout"], 5))
    try:
        async with asyncio.timeout(10):
            return await _asked(store, settings, action, login)
    finally:
        store.close()


async def _asked(store, settings, action, login):
    """show or clear, on a connected store."""
    if action == "clear":
        removed = await store.call("DEL", key(login))
        if isinstance(removed, StoreError):
            raise removed
        return {"login": counted_login(login), "cleared": bool(removed)}
    limits = limits_of(settings["table"], login)
    clock = await store.call("TIME")
    reply = await store.call("HMGET", key(login), "t", *[name for name, *_ in limits]) if limits else [None]
    for answer in (clock, reply):
        if isinstance(answer, StoreError):
            raise answer
    now = int(clock[0]) + int(clock[1]) / 1e6
    elapsed = max(now - (_number(reply[0]) or now), 0)
    # As the script drains them: each level falls at its limit's pace since the last count.
    counted = {
        name: round(max((_number(level) or 0) - elapsed * value / seconds, 0), 2)
        for (name, value, _, seconds), level in zip(limits, reply[1:], strict=True)
    }
    limited = {name: value for name, value, *_ in limits}
    return {"login": counted_login(login), "limits": limited, "counted": counted}


def _number(value):
    if value is None:
        return None
    text = value.decode() if isinstance(value, bytes) else str(value)
    return float(text)


def main(argv=None):
    """The operator's look at a login's counts, and their clearing (docs/operations.md)."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) not in {2, 3} or argv[0] not in {"show", "clear"}:
        print(USAGE, file=sys.stderr)
        return 2
    action, login = argv[0], argv[1]
    path = argv[2] if len(argv) == 3 else os.environ.get("SUBMISSION_LIMITS_FILE", DEFAULT_LIMITS_FILE)
    try:
        result = asyncio.run(_operate(action, login, path))
    except (OSError, ValueError, LimitError, StoreError, TimeoutError) as exc:
        print(f"submission-login-limits: {exc or 'no answer in time'}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
