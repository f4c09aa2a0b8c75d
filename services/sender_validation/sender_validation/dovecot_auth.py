"""A client of Dovecot's auth service: the auth-client protocol, version 1.2.

The web pages check a login and password the way SMTP AUTH does, against the
same Dovecot auth service, so the same login forms (``alice``,
``bob%hosted.example``) map to the same accounts, and Dovecot's failure
penalty applies to the web client's address (``rip``) as it does to an SMTP
client's. One connection a check: the service's workers share nothing.

Protocol (https://doc.dovecot.org/developer_manual/design/auth_protocol/):
the client sends VERSION and CPID; the server sends VERSION, MECH lines, SPID,
CUID, COOKIE and DONE; the client sends ``AUTH <id> PLAIN <params>`` with the
initial response last; the server answers ``OK``, ``FAIL`` or ``CONT`` for that id.
"""

from __future__ import annotations

import base64
import dataclasses
import ipaddress
import os
import socket

PROTOCOL_MAJOR = 1


class AuthError(Exception):
    """The auth service could not be asked (socket, protocol): not a wrong password."""


@dataclasses.dataclass(frozen=True)
class AuthResult:
    """Dovecot's answer: ok, and the canonical user it names (on success, and
    often on failure); reason and temporary as Dovecot gives them."""

    ok: bool
    user: str | None = None
    reason: str | None = None
    temporary: bool = False


def _escape(value):
    """Dovecot's tab-escaping of a parameter value."""
    return value.replace("\x01", "\x011").replace("\t", "\x01t").replace("\r", "\x01r").replace("\n", "\x01n")


def _unescape(value):
    out, chars = [], iter(value)
    for char in chars:
        if char == "\x01":
            out.append({"1": "\x01", "t": "\t", "r": "\r", "n": "\n"}.get(next(chars, ""), ""))
        else:
            out.append(char)
    return "".join(out)


def _ip(value, name):
    """An IP address as Dovecot's rip/lip field may carry it: validated, any
    IPv6 scope id (``%eth0``) dropped, in its canonical text. A value that is
    not an address, or that holds a control character anywhere, is a
    ValueError naming it: nothing of it reaches the request line."""
    if not isinstance(value, str) or any(ord(char) < 0x20 or ord(char) == 0x7F for char in value):
        raise ValueError(f"{name} {value!r} is not an IP address (control character)")
    try:
        address = ipaddress.ip_address(value.split("%", 1)[0] if ":" in value else value)
    except ValueError:
        raise ValueError(f"{name} {value!r} is not an IP address") from None
    return str(address)


class DovecotAuth:
    """Checks logins against a Dovecot auth-client socket (a unix socket)."""

    def __init__(self, socket_path, service="sender-validation", timeout=30.0):
        self.socket_path = socket_path
        self.service = service
        # Dovecot's failure penalty delays a FAIL by up to 15 s; wait longer.
        self.timeout = timeout

    def authenticate(self, login, password, remote_ip, local_ip=None, secured=True):
        """Check login and password for a client at remote_ip; an AuthResult.

        Raises AuthError when the service cannot be asked. A login or password
        that PLAIN cannot carry (a NUL) fails without asking.
        """
        # ValueError names a bad address before anything is sent.
        remote_ip = _ip(remote_ip, "remote address")
        local_ip = _ip(local_ip, "local address") if local_ip else None
        if not login or "\0" in login or "\0" in password:
            return AuthResult(False, reason="invalid login or password")
        initial = base64.b64encode(b"\0" + login.encode() + b"\0" + password.encode()).decode()
        params = [f"service={_escape(self.service)}", f"rip={remote_ip}"]
        if local_ip:
            params.append(f"lip={local_ip}")
        if secured:
            params.append("secured")
        # resp= must come last (the protocol's rule for the initial response).
        params.append(f"resp={initial}")
        request_id = "1"
        with self._connect() as conn:
            reader = conn.makefile("r", encoding="utf-8", newline="\n")
            self._send(conn, f"VERSION\t{PROTOCOL_MAJOR}\t2\nCPID\t{os.getpid()}\n")
            self._handshake(reader)
            self._send(conn, f"AUTH\t{request_id}\tPLAIN\t{chr(9).join(params)}\n")
            return self._reply(reader, request_id)

    @staticmethod
    def _send(conn, text):
        try:
            conn.sendall(text.encode())
        except OSError as exc:
            raise AuthError(f"the auth service closed the connection: {exc}") from exc

    def _connect(self):
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.settimeout(self.timeout)
        try:
            conn.connect(self.socket_path)
        except OSError as exc:
            conn.close()
            raise AuthError(f"cannot connect to the auth service at {self.socket_path}: {exc}") from exc
        return conn

    @staticmethod
    def _read_line(reader):
        try:
            line = reader.readline()
        except OSError as exc:
            raise AuthError(f"the auth service did not answer: {exc}") from exc
        if not line.endswith("\n"):
            raise AuthError("the auth service closed the connection")
        return line[:-1].split("\t")

    def _handshake(self, reader):
        mechanisms = set()
        while True:
            fields = self._read_line(reader)
            if fields[0] == "VERSION" and fields[1:2] != [str(PROTOCOL_MAJOR)]:
                raise AuthError(f"the auth service speaks protocol {fields[1:]}, not {PROTOCOL_MAJOR}.x")
            if fields[0] == "MECH" and len(fields) > 1:
                mechanisms.add(fields[1].upper())
            if fields[0] == "DONE":
                break
        if "PLAIN" not in mechanisms:
            raise AuthError(f"the auth service does not offer PLAIN (offers {sorted(mechanisms)})")

    def _reply(self, reader, request_id):
        fields = self._read_line(reader)
        if len(fields) < 2 or fields[1] != request_id:
            raise AuthError(f"unexpected answer from the auth service: {fields[0]}")
        params = {}
        for field in fields[2:]:
            key, _, value = field.partition("=")
            params[key] = _unescape(value) if value else True
        if fields[0] == "OK":
            return AuthResult(True, user=params.get("user"))
        if fields[0] == "FAIL":
            return AuthResult(False, user=params.get("user"), reason=params.get("reason"), temporary="temp" in params)
        # CONT: PLAIN with an initial response needs no second step.
        raise AuthError(f"the auth service asked for more than PLAIN needs: {fields[0]}")
