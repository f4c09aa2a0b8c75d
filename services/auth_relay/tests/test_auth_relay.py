"""The relay against a stand-in Dovecot on a real unix socket: lines pass both
ways unchanged, and a temporary FAIL closes the client's connection instead."""

import asyncio
import contextlib

import pytest
from auth_relay.relay import is_temporary_failure, serve

HANDSHAKE = b"VERSION\t1\t2\nMECH\tPLAIN\tplaintext\nSPID\t1\nCUID\t1\nCOOKIE\t00\nDONE\n"


@pytest.mark.parametrize(
    ("line", "temporary"),
    [
        (b"FAIL\t1\tuser=alice\tcode=temp_fail\n", True),
        (b"FAIL\t7\ttemp\n", True),
        (b"FAIL\t1\tuser=alice\n", False),
        (b"FAIL\t1\treason=temp\n", False),
        (b"OK\t1\tuser=alice@runbox.com\n", False),
        (b"FAIL\tcode=temp_fail\n", False),
    ],
)
def test_only_a_fail_marked_temporary_is_held_back(line, temporary):
    assert is_temporary_failure(line) is temporary


async def _dovecot(reader, writer, answers):
    writer.write(HANDSHAKE)
    await writer.drain()
    while line := await reader.readline():
        if line.startswith(b"AUTH\t"):
            writer.write(answers.pop(0))
            await writer.drain()
    writer.close()


async def _exchange(tmp_path, answers, requests):
    upstream, listen = str(tmp_path / "dovecot"), str(tmp_path / "relay")
    dovecot = await asyncio.start_unix_server(lambda r, w: _dovecot(r, w, answers), path=upstream)
    relay = asyncio.ensure_future(serve(listen, upstream))
    for _ in range(100):
        with contextlib.suppress(OSError):
            reader, writer = await asyncio.open_unix_connection(listen)
            break
        await asyncio.sleep(0.01)
    writer.write(b"VERSION\t1\t1\nCPID\t42\n")
    received = [await reader.readuntil(b"DONE\n")]
    for request in requests:
        writer.write(request)
        received.append(await reader.readline())
    relay.cancel()
    dovecot.close()
    return received


def test_answers_pass_unchanged_and_a_temporary_failure_closes_the_connection(tmp_path):
    answers = [b"OK\t1\tuser=alice@runbox.com\n", b"FAIL\t2\tuser=bob\n", b"FAIL\t3\tuser=carol\tcode=temp_fail\n"]
    requests = [f"AUTH\t{n}\tPLAIN\tservice=smtp\tresp=AA==\n".encode() for n in (1, 2, 3)]
    received = asyncio.run(_exchange(tmp_path, answers, requests))
    assert received[0] == HANDSHAKE
    assert received[1:] == [b"OK\t1\tuser=alice@runbox.com\n", b"FAIL\t2\tuser=bob\n", b""], (
        "the temporary FAIL must end the connection (Postfix then answers 454), the others pass unchanged"
    )


def test_a_dovecot_that_is_down_closes_the_connection(tmp_path):
    async def run():
        listen = str(tmp_path / "relay")
        relay = asyncio.ensure_future(serve(listen, str(tmp_path / "absent")))
        for _ in range(100):
            with contextlib.suppress(OSError):
                reader, _writer = await asyncio.open_unix_connection(listen)
                break
            await asyncio.sleep(0.01)
        data = await reader.read()
        relay.cancel()
        return data

    assert asyncio.run(run()) == b""
