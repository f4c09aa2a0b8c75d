"""SMTP client that the tests run on the host under test (Python 3 stdlib only).

It reads a JSON list of sessions from its first argument, plays each one as a
mail client would (connect by name, EHLO, STARTTLS verified against the system
trust store, AUTH PLAIN, MAIL, RCPT, DATA) and prints one JSON result a session.
A session stops at the first step the server refuses; the result holds the
reply code and text of every step that ran.
"""

import base64
import concurrent.futures
import json
import smtplib
import socket
import ssl
import sys


def _reply(pair):
    code, text = pair
    return [code, text.decode("utf-8", "replace") if isinstance(text, bytes) else text]


def _features(client):
    return sorted(client.esmtp_features)


def _tls_context(case):
    context = ssl.create_default_context()
    if case.get("tls_max"):
        # Offer only protocols older than the server's floor: the handshake must fail.
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
        context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        context.maximum_version = getattr(ssl.TLSVersion, case["tls_max"])
    return context


def run_session(case):
    result = {}
    source = (case["source"], 0) if case.get("source") else None
    try:
        client = smtplib.SMTP(timeout=case.get("timeout", 30), source_address=source)
        # starttls() verifies the certificate against this name; SMTP() sets it only
        # when it connects itself, and then it hides the greeting the tests check.
        client._host = case["host"]
        result["banner"] = _reply(client.connect(case["host"], case["port"]))
    except (OSError, smtplib.SMTPException) as exc:
        result["error"] = f"connect: {exc}"
        return result
    try:
        result["ehlo"] = _reply(client.ehlo("probe.test"))
        result["features"] = _features(client)
        if case.get("starttls"):
            try:
                code, text = client.starttls(context=_tls_context(case))
            except smtplib.SMTPResponseException as exc:
                result["starttls"] = [exc.smtp_code, exc.smtp_error.decode()]
                return result
            except (ssl.SSLError, ssl.CertificateError, OSError) as exc:
                result["tls_error"] = f"{type(exc).__name__}: {exc}"
                return result
            result["starttls"] = _reply((code, text))
            sock = client.sock
            cert = sock.getpeercert()
            result["tls"] = {
                "version": sock.version(),
                "cipher": sock.cipher()[0],
                "names": sorted(v for k, v in cert.get("subjectAltName", ()) if k == "DNS"),
                "not_after": cert.get("notAfter"),
            }
            result["ehlo_tls"] = _reply(client.ehlo("probe.test"))
            result["features_tls"] = _features(client)
        if "login" in case:
            token = b"\0" + case["login"].encode() + b"\0" + case["password"].encode()
            result["auth"] = _reply(client.docmd("AUTH", "PLAIN " + base64.b64encode(token).decode()))
            if result["auth"][0] != 235:
                return result
        if "mail_from" not in case:
            return result
        result["mail"] = _reply(client.docmd(f"MAIL FROM:<{case['mail_from']}>"))
        if result["mail"][0] != 250:
            return result
        result["rcpt"] = []
        for rcpt in case["rcpt_to"]:
            result["rcpt"].append(_reply(client.docmd(f"RCPT TO:<{rcpt}>")))
        if not any(code == 250 for code, _ in result["rcpt"]):
            return result
        result["data"] = _reply(client.data(case["data"].encode()))
        return result
    except smtplib.SMTPServerDisconnected as exc:
        result["error"] = f"disconnected: {exc}"
        return result
    except (OSError, smtplib.SMTPException) as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
        return result
    finally:
        try:
            client.quit()
        except (OSError, smtplib.SMTPException):
            client.close()


def main():
    cases = json.loads(base64.b64decode(sys.argv[1]))
    socket.setdefaulttimeout(60)
    # Sessions are independent; running them side by side keeps Dovecot's delay
    # after each refused login from adding up.
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        print(json.dumps(list(pool.map(run_session, cases))))


if __name__ == "__main__":
    main()
