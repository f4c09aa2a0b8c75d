"""Relay Dovecot's auth-client protocol from Postfix to Dovecot, line for line,
except a temporary failure.

Dovecot answers a login it could not check (its database is down) with
``FAIL <id> code=temp_fail`` (``temp`` before Dovecot 2.3). Postfix's Dovecot
client knows no temporary FAIL: it answers such a login ``535 5.7.8``, and a
mail client then asks its user for the password again, or gives up on a right
one. Postfix answers ``454 4.7.0 Temporary authentication failure`` when it
loses the connection to the auth server, so the relay closes the connection
instead of passing such a FAIL on; smtpd connects again for the next login.
Everything else passes unchanged, in both directions.
"""

from __future__ import annotations

import asyncio
import logging
import os

log = logging.getLogger("auth_relay")

# Dovecot's markers of a temporary failure in a FAIL reply's fields.
TEMPORARY = (b"code=temp_fail", b"temp")
MAX_LINE = 65536


def is_temporary_failure(line):
    """Whether a line from Dovecot is a FAIL reply marked temporary."""
    fields = line.rstrip(b"\r\n").split(b"\t")
    return fields[0] == b"FAIL" and any(field in TEMPORARY for field in fields[2:])


async def _client_to_server(client, server):
    try:
        while data := await client.read(65536):
            server.write(data)
            await server.drain()
    except (ConnectionError, OSError):
        pass


async def _server_to_client(server, client):
    """Pass Dovecot's lines on until a temporary FAIL; True if one came."""
    try:
        while line := await server.readline():
            if is_temporary_failure(line):
                return True
            client.write(line)
            await client.drain()
    except (ConnectionError, OSError, asyncio.LimitOverrunError, ValueError):
        pass
    return False


async def relay(client_reader, client_writer, upstream):
    try:
        server_reader, server_writer = await asyncio.open_unix_connection(upstream, limit=MAX_LINE)
    except OSError as exc:
        # Postfix sees a lost connection: 454, as for any auth server that is down.
        log.warning("cannot reach Dovecot at %s: %s", upstream, exc)
        client_writer.close()
        return
    upward = asyncio.ensure_future(_client_to_server(client_reader, server_writer))
    temporary = await _server_to_client(server_reader, client_writer)
    if temporary:
        log.info("a temporary failure from Dovecot: connection closed, so that Postfix answers 454")
    upward.cancel()
    for writer in (client_writer, server_writer):
        writer.close()


async def serve(listen, upstream):
    if os.path.exists(listen):
        os.unlink(listen)
    server = await asyncio.start_unix_server(
        lambda reader, writer: relay(reader, writer, upstream), path=listen, limit=MAX_LINE
    )
    async with server:
        await server.serve_forever()
