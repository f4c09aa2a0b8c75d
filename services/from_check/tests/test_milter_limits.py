"""Per-login limits in the milter, counted in a real Redis (Debian's
redis-server, started for each test on a socket of its own), through the
milter protocol as Postfix speaks it."""

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import time

import pytest
from from_check import limits as limits_module
from milter_client import Postfix, serving

REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"
ALICE, CAROL = "alice@runbox.com", "carol@runbox.com"
FROM_ALICE = [("From", "Alice <alice@runbox.com>"), ("Subject", "hello")]
FROM_CAROL = [("From", "carol@runbox.com")]
NO_LIMITS = {"messages_per_hour": 0, "messages_per_day": 0, "recipients_per_hour": 0, "recipients_per_day": 0}


class Redis:
    """A redis-server of the test's own, on a unix socket, no TCP, no disk."""

    def __init__(self, directory):
        self.socket = str(directory / "redis.sock")
        self.directory = directory
        self.process = None

    def arguments(self):
        return ["--port", "0", "--unixsocket", self.socket, "--save", "", "--appendonly", "no"]

    def start(self):
        assert os.path.exists(REDIS), "Debian's redis-server is not installed (scripts/bootstrap.sh installs it)"
        self.process = subprocess.Popen(
            [REDIS, *self.arguments()],
            cwd=self.directory,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for line in self.process.stdout:  # an event, not a sleep: its own word that it is ready
            if "ready to accept connections" in line.lower():
                return self
        raise AssertionError(f"redis-server did not start: {self.process.wait()}")

    def stop(self):
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
            self.process = None

    def command(self, *args):
        return subprocess.run(
            ["redis-cli", "-s", self.socket, *map(str, args)], capture_output=True, text=True, check=True
        ).stdout.strip()


@pytest.fixture
def redis(tmp_path):
    server = Redis(tmp_path).start()
    yield server
    server.stop()


def write_limits(path, store, default=None, logins=None, **settings):
    raw = {"store": store, "default": dict(NO_LIMITS, **(default or {})), "logins": logins or {}, **settings}
    # As the role writes it: whole, then moved into place.
    path.with_suffix(".tmp").write_text(json.dumps(raw))
    path.with_suffix(".tmp").rename(path)


@pytest.fixture
def limits_file(tmp_path, redis):
    path = tmp_path / "limits.json"
    write_limits(path, redis.socket, {"messages_per_hour": 3, "recipients_per_hour": 5}, timeout=0.5)
    return path


@pytest.fixture
def milter(tables, store_socket, tmp_path, limits_file):
    """The milter counting on its main socket; yields a connected Postfix."""
    path = str(tmp_path / "milter.sock")
    config = {"socket": f"unix:{path}", "lmdb_tables": tables, "store_socket": store_socket, "limits": str(limits_file)}
    with serving(config):
        postfix = Postfix(path)
        postfix.negotiate()
        yield postfix


def test_a_counting_socket_asks_for_each_recipient_and_the_listener_with_no_reply(milter, tmp_path):
    fresh = Postfix(str(tmp_path / "milter.sock"))
    _, data = fresh.negotiate()
    steps = int.from_bytes(data[8:12], "big")
    assert not steps & 0x8, "RCPT events left out: recipients cannot be counted"
    assert steps & 0x8000, "a reply asked to each RCPT: Postfix would wait on it"
    assert data[16:] == b"{auth_authen} i {mail_addr} {daemon_name}\0"


def test_a_login_is_held_at_its_limit_while_another_login_sends_on(milter):
    for n in range(3):
        assert milter.whole(ALICE, FROM_ALICE, recipients=["x@example.net"]) == (b"a", b""), f"message {n + 1}"
    command, text = milter.whole(ALICE, FROM_ALICE, recipients=["x@example.net"])
    assert command == b"y"
    assert text == b"450 4.7.1 This login has reached its limit of 3 messages an hour - try again later\0"
    # Carol behind the same address (the milter does not know it) is not held.
    assert milter.whole(CAROL, FROM_CAROL, recipients=["x@example.net"]) == (b"a", b"")


def test_recipients_are_counted_and_a_message_held_counts_nothing(milter, redis):
    assert milter.whole(ALICE, FROM_ALICE, recipients=[f"r{n}@example.net" for n in range(4)])[0] == b"a"
    command, text = milter.whole(ALICE, FROM_ALICE, recipients=["a@example.net", "b@example.net"])
    assert command == b"y" and b"limit of 5 recipients an hour" in text
    # The held message charged nothing: one more recipient still fits, then none.
    assert milter.whole(ALICE, FROM_ALICE, recipients=["c@example.net"])[0] == b"a"
    assert milter.whole(ALICE, FROM_ALICE, recipients=["d@example.net"])[0] == b"y"
    assert redis.command("TTL", "limits:alice@runbox.com") in {str(s) for s in range(3590, 3601)}


def test_a_message_with_more_recipients_than_the_limit_is_refused_for_good_and_counts_nothing(milter, redis):
    command, text = milter.whole(ALICE, FROM_ALICE, recipients=[f"r{n}@example.net" for n in range(6)])
    assert command == b"y"
    assert text.startswith(
        b"550 5.7.1 This message has more recipients than this login's limit of 5 recipients an hour"
    )
    assert milter.whole(ALICE, FROM_ALICE, recipients=[f"r{n}@example.net" for n in range(5)])[0] == b"a"


def test_recipients_of_an_aborted_message_are_not_counted_with_the_next(milter):
    for n in range(4):
        milter.send(b"R", f"<r{n}@example.net>".encode() + b"\0")
    milter.send(b"A")
    assert milter.whole(ALICE, FROM_ALICE, recipients=["a@example.net", "b@example.net"])[0] == b"a"


def test_a_raised_limit_lets_a_held_login_send_at_once(milter, redis, limits_file):
    assert [milter.whole(ALICE, FROM_ALICE)[0] for _ in range(4)] == [b"a", b"a", b"a", b"y"]
    write_limits(limits_file, redis.socket, {"messages_per_hour": 1000, "recipients_per_hour": 5})
    deadline = time.monotonic() + 5
    while milter.whole(ALICE, FROM_ALICE)[0] != b"a":
        assert time.monotonic() < deadline, "the raised limit was not read"


def test_a_message_the_from_check_refuses_is_not_counted(milter):
    for _ in range(4):
        assert milter.whole(ALICE, [("From", "ceo@bank.example")], recipients=["x@example.net"])[0] == b"y"
    for n in range(3):
        assert milter.whole(ALICE, FROM_ALICE, recipients=["x@example.net"])[0] == b"a", f"message {n + 1}"


def test_the_limit_rolls_one_message_fits_again_after_its_share_of_the_hour(milter, redis):
    for _ in range(3):
        assert milter.whole(ALICE, FROM_ALICE, recipients=["x@example.net"])[0] == b"a"
    assert milter.whole(ALICE, FROM_ALICE, recipients=["x@example.net"])[0] == b"y"
    # 20 minutes later (3600 / 3 s): Redis's clock cannot be moved, the time of the count can.
    counted_at = float(redis.command("HGET", "limits:alice@runbox.com", "t"))
    redis.command("HSET", "limits:alice@runbox.com", "t", f"{counted_at - 1200:.6f}")
    assert milter.whole(ALICE, FROM_ALICE, recipients=["x@example.net"])[0] == b"a"
    assert milter.whole(ALICE, FROM_ALICE, recipients=["x@example.net"])[0] == b"y", "two fit in 20 minutes"


def test_a_login_of_its_own_has_its_limits_and_zero_counts_nothing(tmp_path, redis, limits_file, milter):
    write_limits(
        limits_file,
        redis.socket,
        {"messages_per_hour": 1},
        {"Carol@runbox.com": {"messages_per_hour": 0, "recipients_per_day": 2}},
    )
    # The milter reads the file again when it changes (looked at once a second):
    # alice's second message of an empty count is held once it has.
    deadline = time.monotonic() + 5
    while [milter.whole(ALICE, FROM_ALICE)[0] for _ in range(2)] != [b"a", b"y"]:
        assert time.monotonic() < deadline, "the changed limits file was not read"
        redis.command("DEL", "limits:alice@runbox.com")
    for n in range(2):
        assert milter.whole(CAROL, FROM_CAROL, recipients=["x@example.net"])[0] == b"a", f"message {n + 1}"
    command, text = milter.whole(CAROL, FROM_CAROL, recipients=["x@example.net"])
    assert command == b"y" and b"limit of 2 recipients a day" in text


def test_two_milters_on_one_store_count_together(tables, store_socket, tmp_path, limits_file):
    """A fleet's two MTAs: a login over its limit on one is over it on the other."""
    first, second = str(tmp_path / "one.sock"), str(tmp_path / "two.sock")
    base = {"lmdb_tables": tables, "store_socket": store_socket, "limits": str(limits_file)}
    with serving(dict(base, socket=f"unix:{first}")), serving(dict(base, socket=f"unix:{second}")):
        one, two = Postfix(first), Postfix(second)
        one.negotiate()
        two.negotiate()
        assert [m.whole(ALICE, FROM_ALICE)[0] for m in (one, two, one)] == [b"a"] * 3
        assert two.whole(ALICE, FROM_ALICE)[0] == b"y"
        assert one.whole(ALICE, FROM_ALICE)[0] == b"y"


def test_a_listener_not_counted_sends_past_the_limit(tables, store_socket, tmp_path, redis):
    path, limits = str(tmp_path / "milter.sock"), tmp_path / "limits.json"
    write_limits(limits, redis.socket, {"messages_per_hour": 1}, uncounted_listeners=["bulk"])
    with serving(
        {"socket": f"unix:{path}", "lmdb_tables": tables, "store_socket": store_socket, "limits": str(limits)}
    ):
        postfix = Postfix(path)
        postfix.negotiate()
        assert [postfix.whole(ALICE, FROM_ALICE, listener="bulk")[0] for _ in range(3)] == [b"a"] * 3
        assert postfix.whole(ALICE, FROM_ALICE, listener="smtp")[0] == b"a"
        assert postfix.whole(ALICE, FROM_ALICE, listener="smtp")[0] == b"y"


def test_the_count_socket_counts_without_checking_the_from(tables, store_socket, tmp_path, limits_file):
    main, count = str(tmp_path / "milter.sock"), str(tmp_path / "count.sock")
    config = {
        "socket": f"unix:{main}",
        "count_socket": f"unix:{count}",
        "lmdb_tables": tables,
        "store_socket": store_socket,
        "limits": str(limits_file),
    }
    with serving(config):
        postfix = Postfix(count)
        postfix.negotiate()
        assert [postfix.whole(ALICE, [("From", "ceo@bank.example")])[0] for _ in range(3)] == [b"a"] * 3
        assert postfix.whole(ALICE, [("From", "ceo@bank.example")])[0] == b"y"


def test_a_message_deferred_at_its_end_counts_nothing(tables, store_socket, tmp_path, limits_file, redis):
    """Signing fails (no key manifest): 451 at the end of the message, and the count is untouched."""
    path = str(tmp_path / "milter.sock")
    config = {
        "socket": f"unix:{path}",
        "lmdb_tables": tables,
        "store_socket": store_socket,
        "limits": str(limits_file),
        "dkim": {"manifest": str(tmp_path / "no-keys.json")},
    }
    with serving(config):
        postfix = Postfix(path)
        postfix.negotiate()
        for _ in range(4):
            assert postfix.message(ALICE, FROM_ALICE)[0] == b"c"
            postfix.send(b"E")
            command, text = postfix.receive()
            assert command == b"y" and text.startswith(b"451 4.3.0"), text
    assert redis.command("EXISTS", "limits:alice@runbox.com") == "0"


def test_a_call_that_times_out_leaves_the_calls_behind_it_their_own_time(tmp_path):
    """A store slow for a moment (0.6 s on one answer, then the next at once):
    the first call passes its 0.5 s, the one sent 0.3 s later gets its answer."""
    path = str(tmp_path / "slow.sock")

    async def main():
        async def serve(reader, writer):
            for delay in (0.6, 0.0):
                await reader.readuntil(b"$1\r\nm\r\n")  # the end of one call
                await asyncio.sleep(delay)
                writer.write(b"*2\r\n:0\r\n:0\r\n")
            await reader.read()

        server = await asyncio.start_unix_server(serve, path)
        store = limits_module.CounterStore(path, timeout=0.5)
        limits = [("messages_per_hour", 3, "m", 3600)]
        first = asyncio.ensure_future(store.charge(ALICE, 1, limits))
        await asyncio.sleep(0.3)  # the second call's time: part of what is tested
        second = asyncio.ensure_future(store.charge(ALICE, 1, limits))
        results = await asyncio.gather(first, second, return_exceptions=True)
        store.close()
        server.close()
        return results

    first, second = asyncio.run(main())
    assert isinstance(first, TimeoutError), first
    assert second == (0, 0), second


def test_store_down_mail_passes_uncounted_and_is_logged_then_counts_again(milter, redis, capfd):
    redis.stop()
    for _ in range(5):
        assert milter.whole(ALICE, FROM_ALICE)[0] == b"a"
    assert (
        "ABC123: login=alice@runbox.com sent uncounted: the counter store cannot be reached" in capfd.readouterr().err
    )
    redis.start()
    assert [milter.whole(ALICE, FROM_ALICE)[0] for _ in range(4)] == [b"a", b"a", b"a", b"y"]


def test_store_down_defers_when_the_settings_say_so(tmp_path, redis, limits_file, milter):
    write_limits(limits_file, redis.socket, {"messages_per_hour": 3}, unreachable="defer")
    redis.stop()
    deadline = time.monotonic() + 5
    while (reply := milter.whole(ALICE, FROM_ALICE))[0] == b"a":
        assert time.monotonic() < deadline, "the changed limits file was not read"
    assert reply == (b"y", b"451 4.3.0 the sending limits cannot be checked now; try again later\0")


def test_a_store_that_never_answers_holds_a_message_only_for_the_timeout(tables, store_socket, tmp_path, capfd):
    hung = socket.socket(socket.AF_UNIX)
    hung.bind(str(tmp_path / "hung.sock"))
    hung.listen(16)
    path, limits = str(tmp_path / "milter.sock"), tmp_path / "limits.json"
    write_limits(limits, str(tmp_path / "hung.sock"), {"messages_per_hour": 3}, timeout=0.3)
    with serving(
        {"socket": f"unix:{path}", "lmdb_tables": tables, "store_socket": store_socket, "limits": str(limits)}
    ):
        postfix = Postfix(path)
        postfix.negotiate()
        for _ in range(5):
            started = time.monotonic()
            assert postfix.whole(ALICE, FROM_ALICE)[0] == b"a"
            assert 0.3 <= time.monotonic() - started < 2
    hung.close()
    assert capfd.readouterr().err.count("sent uncounted: the counter store cannot be reached (no answer in time)") == 5


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        ({"store": "redis.sock"}, "store must be the counter store's socket path or a TLS address, not 'redis.sock'"),
        ({"store": "/r.sock", "timeout": 0}, "timeout must be positive seconds, not 0"),
        ({"store": "/r.sock", "unreachable": "drop"}, "unreachable must be one of ('accept', 'defer'), not 'drop'"),
        ({"store": "/r.sock", "default": dict(NO_LIMITS, messages_per_day=-1)}, "messages_per_day must be a whole"),
    ],
)
def test_a_bad_limits_file_is_named_and_the_limits_before_stay(tmp_path, raw, named):
    path = tmp_path / "limits.json"
    write_limits(path, "/run/r.sock", {"messages_per_hour": 7})
    lines = []
    limits = limits_module.Limits(str(path), log=lines.append)
    assert limits.current(0)["table"]["default"]["messages_per_hour"] == 7
    path.write_text(json.dumps(dict({"default": NO_LIMITS}, **raw)))
    os.utime(path, ns=(0, 0))
    assert limits.current(2)["table"]["default"]["messages_per_hour"] == 7
    assert len(lines) == 1 and named in lines[0] and "the limits read before stay" in lines[0], lines


class TlsRedis(Redis):
    """A Redis of the test's own over TLS on a loopback port, as a fleet's
    database host serves it: client certificates from its CA required, no
    default user, one user with a password."""

    def __init__(self, directory, password):
        super().__init__(directory)
        self.password = password
        self.port = free_port()
        for name in ("ca", "other"):
            openssl(
                *("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"),
                *("-keyout", directory / f"{name}.key", "-out", directory / f"{name}.crt", "-days", "1"),
                *("-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"),
            )
        # An MTA's client certificate from the fleet's CA, and one from a CA Redis does not know.
        for name, ca in (("client", "ca"), ("stranger", "other")):
            openssl(
                *("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"),
                *("-keyout", directory / f"{name}.key", "-out", directory / f"{name}.csr", "-subj", f"/CN={name}"),
            )
            openssl(
                *("x509", "-req", "-in", directory / f"{name}.csr", "-CA", directory / f"{ca}.crt"),
                *("-CAkey", directory / f"{ca}.key", "-days", "1", "-out", directory / f"{name}.crt"),
            )

    def arguments(self):
        return [
            "--port", "0", "--tls-port", str(self.port), "--bind", "127.0.0.1",
            "--tls-cert-file", str(self.directory / "ca.crt"), "--tls-key-file", str(self.directory / "ca.key"),
            "--tls-ca-cert-file", str(self.directory / "ca.crt"), "--tls-auth-clients", "yes",
            "--user", "default", "off",
            "--user", "milter", "on", f">{self.password}", "~limits:*", "-@all", "+eval", "+evalsha", "+time",
            "+hmget", "+hset", "+expire", "+del",
            "--save", "", "--appendonly", "no",
        ]  # fmt: skip

    def address(self, password=None, ca="ca", client="client"):
        return limits_module.StoreAddress(
            host="localhost",
            port=self.port,
            ca_file=str(self.directory / f"{ca}.crt"),
            user="milter",
            password=self.password if password is None else password,
            cert_file=str(self.directory / f"{client}.crt") if client else "",
            key_file=str(self.directory / f"{client}.key") if client else "",
        )


def openssl(*args):
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def tls_redis(tmp_path):
    server = TlsRedis(tmp_path, "s3cret-" + os.urandom(6).hex()).start()
    yield server
    server.stop()


def charge_all(address, rounds):
    """Each round charges one message to alice on each of two stores of the
    same address (two MTAs of a fleet); the answers, in order."""

    async def main():
        one, two = limits_module.CounterStore(address, 2), limits_module.CounterStore(address, 2)
        limits = [("messages_per_hour", 3, "m", 3600)]
        answers = []
        for _ in range(rounds):
            for store in (one, two):
                try:
                    answers.append((await store.charge(ALICE, 1, limits))[0])
                except limits_module.StoreError as exc:
                    answers.append(str(exc))
        one.close()
        two.close()
        return answers

    return asyncio.run(main())


def test_two_mtas_count_together_in_a_fleets_redis_over_tls(tls_redis):
    assert charge_all(tls_redis.address(), 2) == [0, 0, 0, 1]


def test_a_wrong_password_or_an_unknown_server_certificate_counts_nothing_and_names_no_password(tls_redis):
    wrong = "not-" + tls_redis.password
    refused = charge_all(tls_redis.address(password=wrong), 1)
    assert "refused user milter" in refused[0] and wrong not in refused[0] and tls_redis.password not in refused[0]
    unknown = charge_all(tls_redis.address(ca="other"), 1)
    assert "certificate verify failed" in unknown[0], unknown
    for client in ("", "stranger"):  # no client certificate, or one from another CA: no TLS session at all
        refused = charge_all(tls_redis.address(client=client), 1)
        # TLS 1.3: the server's alert (or its reset, when the alert races the
        # client's first command) comes on the connection's first read.
        closed = ("alert", "connection reset")
        assert all(isinstance(each, str) and any(word in each.lower() for word in closed) for each in refused), (
            client,
            refused,
        )
    assert charge_all(tls_redis.address(), 1) == [0, 0], "a refused connection counted something"


def test_the_operators_command_shows_and_clears_a_logins_counts_in_a_fleets_store(tls_redis, tmp_path, capsys):
    password_file = tmp_path / "password"
    password_file.write_text(tls_redis.password + "\n")
    address = tls_redis.address()
    store = {
        "host": address.host,
        "port": address.port,
        "ca_file": address.ca_file,
        "cert_file": address.cert_file,
        "key_file": address.key_file,
        "user": "milter",
        "password_file": str(password_file),
    }
    path = tmp_path / "limits.json"
    write_limits(path, store, {"messages_per_hour": 3, "recipients_per_day": 10})
    assert charge_all(address, 1) == [0, 0]
    assert limits_module.main(["show", "Alice@RUNBOX.com", str(path)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["login"] == ALICE and shown["limits"] == {"messages_per_hour": 3, "recipients_per_day": 10}
    # Two messages, drained for at most a few seconds at 3 an hour.
    assert 1.99 <= shown["counted"]["messages_per_hour"] <= 2, shown
    assert limits_module.main(["clear", ALICE, str(path)]) == 0
    assert json.loads(capsys.readouterr().out) == {"login": ALICE, "cleared": True}
    assert charge_all(address, 2) == [0, 0, 0, 1], "the counts were not cleared"


def test_the_operators_command_names_what_is_wrong_and_changes_nothing(tls_redis, tmp_path, capsys):
    address = tls_redis.address()
    assert charge_all(address, 1) == [0, 0]
    path = tmp_path / "limits.json"
    store = {"host": "localhost", "port": tls_redis.port, "ca_file": address.ca_file, "cert_file": address.cert_file}
    write_limits(path, dict(store, key_file=address.key_file, password_file=str(tmp_path / "absent")))
    assert limits_module.main(["clear", ALICE, str(path)]) == 1
    assert f"cannot read {tmp_path / 'absent'}" in capsys.readouterr().err
    write_limits(path, dict(store, ca_file=""))
    assert limits_module.main(["clear", ALICE, str(path)]) == 1
    assert "ca_file must be the path of the CA" in capsys.readouterr().err
    assert limits_module.main(["forget", ALICE, str(path)]) == 2
    assert "usage: submission-login-limits" in capsys.readouterr().err
    # Still two messages counted: the next one is the third of three, then held.
    assert charge_all(address, 1) == [0, 1], "a refused command changed the counts"
