"""SMTP client that the tests run on the host under test (Python 3 stdlib only).

It reads a JSON list of sessions from its first argument (base64), or from
its standard input when that argument is "-", plays each one as a
mail client would (connect by name, EHLO, STARTTLS verified against the system
trust store, AUTH PLAIN, MAIL, RCPT, DATA) and prints one JSON result a session.
A session stops at the first step the server refuses; the result holds the
reply code and text of every step that ran. Passwords may be references to
the file named by $SUBMISSION_VERIFY_SECRETS (secret_refs.py).
"""

import base64
import concurrent.futures
import json
import pathlib
import smtplib
import socket
import ssl
import sys
import time

from secret_refs import reveal


def _reply(pair):
    code, text = pair
    return [code, text.decode("utf-8", "replace") if isinstance(text, bytes) else text]


def _features(client):
    return sorted(client.esmtp_features)


def _tls_context(case):
    context = ssl.create_default_context()
    if case.get("tls_max"):
        # Offer only what the case names (older protocols, weaker suites), so that
        # the handshake shows whether the server accepts it.
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
        context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        context.maximum_version = getattr(ssl.TLSVersion, case["tls_max"])
    if case.get("ciphers"):
        context.set_ciphers(case["ciphers"])
    return context


class Refused(Exception):
    """The server refused a step: the session ends there."""


def _starttls(client, case, result):
    try:
        code, text = client.starttls(context=_tls_context(case))
    except smtplib.SMTPResponseException as exc:
        result["starttls"] = [exc.smtp_code, exc.smtp_error.decode()]
        raise Refused from exc
    except (ssl.SSLError, ssl.CertificateError, OSError) as exc:
        result["tls_error"] = f"{type(exc).__name__}: {exc}"
        raise Refused from exc
    result["starttls"] = _reply((code, text))
    _record_tls(client, result)
    result["ehlo_tls"] = _reply(client.ehlo("probe.test"))
    result["features_tls"] = _features(client)


def _record_tls(client, result):
    sock = client.sock
    cert = sock.getpeercert()
    result["tls"] = {
        "version": sock.version(),
        "cipher": sock.cipher()[0],
        "names": sorted(v for k, v in cert.get("subjectAltName", ()) if k == "DNS"),
        "not_after": cert.get("notAfter"),
    }


def _step(result, key, reply, expected):
    result[key] = _reply(reply)
    if result[key][0] != expected:
        raise Refused


def _transaction(client, case, result):
    if "login" in case:
        token = b"\0" + case["login"].encode() + b"\0" + case["password"].encode()
        _step(result, "auth", client.docmd("AUTH", "PLAIN " + base64.b64encode(token).decode()), 235)
    if "mail_from" not in case:
        return
    if case.get("pause_before_mail"):
        # A session that logged in before something changed on the server (an outage);
        # pause_marker, a path it creates, tells the test it is logged in and waiting.
        if case.get("pause_marker"):
            pathlib.Path(case["pause_marker"]).touch()
        time.sleep(case["pause_before_mail"])
    params = (" " + case["mail_params"]) if case.get("mail_params") else ""
    _step(result, "mail", client.docmd(f"MAIL FROM:<{case['mail_from']}>{params}"), 250)
    result["rcpt"] = [_reply(client.docmd(f"RCPT TO:<{rcpt}>")) for rcpt in case["rcpt_to"]]
    if not any(code == 250 for code, _ in result["rcpt"]):
        return
    if "data" in case:
        # data_fill pads the message to that many bytes more, made here, not sent as an argument.
        fill = ("x" * 998 + "\r\n") * (case.get("data_fill", 0) // 1000 + 1) if case.get("data_fill") else ""
        data = case["data"]
        # header_fills: {placeholder: [text, count]}: text repeated count times, folded
        # into lines of 900 characters, made here (a long header exceeds an argument's limit).
        for placeholder, (text, count) in case.get("header_fills", {}).items():
            value = text * count
            data = data.replace(placeholder, "\r\n ".join(value[i : i + 900] for i in range(0, len(value), 900)))
        started = time.monotonic()
        try:
            result["data"] = _reply(client.data((data + fill).encode()))
            # From the DATA command to the answer after the message.
            result["data_seconds"] = round(time.monotonic() - started, 3)
        except smtplib.SMTPDataError as refused:
            # The DATA command or the message refused (a milter's answer: a per-login limit).
            result["data"] = _reply((refused.smtp_code, refused.smtp_error))
    elif "raw_data" in case:
        _raw_data(client, case, result)


def _raw_data(client, case, result):
    """DATA with the client's bytes as they are: no line-ending repair, no dot-stuffing.

    Whatever the server answers after them is kept, so a test sees whether
    part of the content was taken for commands (SMTP smuggling).
    """
    _step(result, "data_start", client.docmd("DATA"), 354)
    client.send(case["raw_data"].encode())
    replies = []
    client.sock.settimeout(case.get("reply_wait", 5))
    try:
        while True:
            replies.append(_reply(client.getreply()))
    except (OSError, smtplib.SMTPException):
        pass
    result["data_replies"] = replies


def pregreet(case):
    """A client that speaks before the server's greeting: what the server says back."""
    result = {}
    source = (case["source"], 0) if case.get("source") else None
    with socket.create_connection((case["host"], case["port"]), case.get("timeout", 15), source) as sock:
        sock.sendall(b"EHLO probe.test\r\n")
        received = b""
        try:
            while chunk := sock.recv(4096):
                received += chunk
        except OSError as exc:
            result["error"] = f"{type(exc).__name__}: {exc}"
    result["received"] = received.decode("utf-8", "replace")
    return result


def run_session(case):
    if case.get("pregreet"):
        return pregreet(case)
    result = {}
    source = (case["source"], 0) if case.get("source") else None
    timeout = case.get("timeout", 30)
    if case.get("implicit_tls"):
        client = smtplib.SMTP_SSL(timeout=timeout, source_address=source, context=_tls_context(case))
    else:
        client = smtplib.SMTP(timeout=timeout, source_address=source)
    # The TLS handshake verifies the certificate against this name; SMTP() sets
    # it only when it connects itself, and then it hides the greeting the tests check.
    client._host = case["host"]
    try:
        try:
            started = time.monotonic()
            result["banner"] = _reply(client.connect(case["host"], case["port"]))
            # Connect to the whole 220 reply: what a mail client waits for.
            result["banner_seconds"] = round(time.monotonic() - started, 3)
        except (ssl.SSLError, ssl.CertificateError) as exc:
            result["tls_error"] = f"{type(exc).__name__}: {exc}"
            raise Refused from exc
        if case.get("implicit_tls"):
            _record_tls(client, result)
        result["ehlo"] = _reply(client.ehlo("probe.test"))
        result["features"] = _features(client)
        if case.get("starttls"):
            _starttls(client, case, result)
        _transaction(client, case, result)
    except Refused:
        pass
    except (OSError, smtplib.SMTPException) as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        try:
            client.quit()
        except (OSError, smtplib.SMTPException):
            client.close()
    return result


def main():
    cases = reveal(json.loads(sys.stdin.read() if sys.argv[1] == "-" else base64.b64decode(sys.argv[1])))
    socket.setdefaulttimeout(60)
    # Sessions are independent; running them side by side keeps Dovecot's delay
    # after each refused login from adding up.
    workers = int(sys.argv[2]) if len(sys.argv) > 2 else 8
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        print(json.dumps(list(pool.map(run_session, cases))))


if __name__ == "__main__":
    main()
