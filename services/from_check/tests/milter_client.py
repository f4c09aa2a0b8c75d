"""Postfix's side of the milter protocol, for the milter's tests: the milter
serving in a thread as its service runs it, and a client that speaks as
Postfix 3.7 and 3.10 do."""

import asyncio
import contextlib
import socket
import struct
import threading

from from_check import milter

# What Postfix 3.7 and 3.10 offer with milter_protocol = 6.
POSTFIX_ACTIONS, POSTFIX_STEPS = 0x1FF, 0x1FFFFF


@contextlib.contextmanager
def serving(config):
    """The milter serving in a thread, as its service runs it."""
    ready, stop = threading.Event(), threading.Event()
    thread = threading.Thread(target=lambda: asyncio.run(milter.serve(config, ready, stop)), daemon=True)
    thread.start()
    assert ready.wait(5)
    try:
        yield
    finally:
        stop.set()
        thread.join(5)


class Postfix:
    """The MTA's side: packets out, replies in."""

    def __init__(self, path, timeout=5):
        self.socket = socket.socket(socket.AF_UNIX)
        self.socket.settimeout(timeout)
        self.socket.connect(path)

    def send(self, command, data=b""):
        self.socket.sendall(milter.packet(command, data))

    def receive(self):
        length = struct.unpack("!I", self.exactly(4))[0]
        data = self.exactly(length)
        return data[:1], data[1:]

    def exactly(self, size):
        data = b""
        while len(data) < size:
            chunk = self.socket.recv(size - len(data))
            if not chunk:
                raise ConnectionError("the milter closed the connection")
            data += chunk
        return data

    def negotiate(self):
        self.send(b"O", struct.pack("!III", 6, POSTFIX_ACTIONS, POSTFIX_STEPS))
        return self.receive()

    def message(self, login, headers, sender=None, recipients=(), listener=None):
        """One message's recipients, headers and end of headers; the milter's reply."""
        self.headers(login, headers, sender, recipients, listener)
        return self.receive()

    def whole(self, login, headers, sender=None, recipients=(), listener=None):
        """One message to its end, as Postfix sends it to a milter that asked
        for no body: the reply at the end of the headers, and when that is
        "continue", the reply at the end of the message."""
        command, data = self.message(login, headers, sender, recipients, listener)
        if command != b"c":
            return command, data
        self.send(b"E")
        return self.receive()

    def headers(self, login, headers, sender=None, recipients=(), listener=None):
        """One message's recipients (RCPT events, no reply expected), headers
        and end of headers, its reply left to read."""
        for recipient in recipients:
            self.send(b"R", f"<{recipient}>".encode() + b"\0")
        for name, value in headers:
            self.send(b"L", name.encode() + b"\0" + value.encode() + b"\0")
        macros = b"i\0ABC123\0" + (b"{auth_authen}\0" + login.encode() + b"\0" if login else b"")
        macros += b"{mail_addr}\0" + sender.encode() + b"\0" if sender is not None else b""
        macros += b"{daemon_name}\0" + listener.encode() + b"\0" if listener is not None else b""
        self.send(b"D", b"N" + macros)
        self.send(b"N")
