"""SMTP load generator that runs on the host under test (Python 3 stdlib only).

Used by tests/test_restart_under_load.py and benchmarks/submission_load.py.

    python3 smtp_load.py PLAN.json   (or the plan, base64-encoded JSON, as argument)

A plan names the target, the accounts, how many clients run side by side and
how many messages each session sends. Every client opens sessions one after
another (connect, EHLO, STARTTLS verified against the system trust store, AUTH
PLAIN) until the plan's sessions are used up or its time is over, and sends
each message with a token of its own. Some transactions use a sender that
belongs to another account; the target must refuse those. The output (JSON)
says which tokens were answered 250, which were sent without an answer (the
connection broke after the final dot: SMTP lets the server have taken them),
which were refused, and the latencies.
"""

import base64
import ipaddress
import json
import multiprocessing
import pathlib
import random
import smtplib
import ssl
import sys
import threading
import time


class Plan:
    def __init__(self, raw):
        # Kept as given: a plan shared out among processes is rebuilt from it.
        self.raw = raw
        self.host = raw["host"]
        self.port = int(raw["port"])
        self.starttls = raw.get("starttls", True)
        self.resume_tls = raw.get("resume_tls", False)
        # [{login, password, sender, foreign_sender}]; login absent: no AUTH (baseline).
        self.accounts = raw["accounts"]
        self.recipient = raw["recipient"]
        self.clients = int(raw["clients"])
        self.messages = int(raw["messages_per_session"])
        self.sessions = raw.get("sessions")
        self.seconds = raw.get("seconds")
        # Every n-th transaction uses another account's sender (0: never).
        self.foreign_every = int(raw.get("foreign_every", 0))
        self.run_id = raw["run_id"]
        self.body_bytes = int(raw.get("body_bytes", 2000))
        self.timeout = float(raw.get("timeout", 30))
        self.processes = int(raw.get("processes", 1))
        # Every session from a loopback address no earlier session used, as a
        # client never seen before (the target must listen on loopback).
        self.fresh_sources = bool(raw.get("fresh_sources", False))


def unseen_loopback_address():
    """A random address in 127.128.0.0/9 (8 million), as a client no earlier
    session came from; random reseeds in every forked process."""
    return str(ipaddress.IPv4Address(0x7F800000 + random.randrange(1, 0x7FFFFE)))  # noqa: S311 (an address, not a secret)


class Tally:
    """What all clients saw, under one lock."""

    def __init__(self):
        self.lock = threading.Lock()
        self.next_session = 0
        self.accepted = []
        self.unanswered = []
        # Answered 4xx: not accepted, to be sent again later (a restart, a milter down).
        self.deferred = []
        self.refused_as_expected = 0
        self.wrong = []
        self.errors = {}
        self.sessions_done = 0
        self.transaction_ms = []
        self.setup_ms = []

    def take_session(self, plan, deadline):
        with self.lock:
            if plan.sessions is not None and self.next_session >= plan.sessions:
                return None
            if deadline is not None and time.monotonic() >= deadline:
                return None
            self.next_session += 1
            return self.next_session - 1

    def error(self, stage, exc):
        # An SMTP reply's code is part of the key: a 454 and a 535 at AUTH differ.
        code = getattr(exc, "smtp_code", None)
        key = f"{stage}: {type(exc).__name__}" + (f" {code}" if code else "")
        with self.lock:
            entry = self.errors.setdefault(key, {"count": 0, "example": str(exc)[:200]})
            entry["count"] += 1


def _starttls(client, plan, context, session):
    code, text = client.docmd("STARTTLS")
    if code != 220:
        raise smtplib.SMTPResponseException(code, text)
    client.sock = context.wrap_socket(client.sock, server_hostname=plan.host, session=session)
    client.file = None
    client.helo_resp = client.ehlo_resp = None
    client.esmtp_features = {}
    client.does_esmtp = False
    client.ehlo("load.test")
    return client.sock.session


def _message(plan, token, sender):
    head = (
        f"From: <{sender}>\r\nTo: <{plan.recipient}>\r\nSubject: load {token}\r\n"
        f"Message-ID: <{token}@load.test>\r\nX-Load-Token: {token}\r\n\r\n"
    )
    line = "0123456789" * 7 + "\r\n"
    return (head + line * max(1, plan.body_bytes // len(line))).encode()


def _transaction(client, plan, tally, sender, token):
    started = time.perf_counter()
    code, _ = client.mail(sender)
    if code != 250:
        return code
    code, _ = client.rcpt(plan.recipient)
    if code != 250:
        client.rset()
        return code
    code, _ = client.docmd("DATA")
    if code != 354:
        # The transaction stays open after a refused DATA (a milter that is
        # restarting defers it): without RSET the next MAIL would be "nested".
        client.rset()
        return code
    client.send(smtplib.quotedata(_message(plan, token, sender).decode()).encode() + b"\r\n.\r\n")
    try:
        code, _ = client.getreply()
    except (OSError, smtplib.SMTPException):
        with tally.lock:
            tally.unanswered.append(token)
        raise
    with tally.lock:
        tally.transaction_ms.append((time.perf_counter() - started) * 1000)
    return code


def _session(plan, tally, index, context, tls_session):
    account = plan.accounts[index % len(plan.accounts)]
    source = (unseen_loopback_address(), 0) if plan.fresh_sources else None
    started = time.perf_counter()
    client = smtplib.SMTP(timeout=plan.timeout, source_address=source)
    stage = "connect"
    try:
        client.connect(plan.host, plan.port)
        client.ehlo("load.test")
        if plan.starttls:
            stage = "starttls"
            tls_session = _starttls(client, plan, context, tls_session if plan.resume_tls else None)
        if account.get("login"):
            stage = "auth"
            token = base64.b64encode(f"\0{account['login']}\0{account['password']}".encode()).decode()
            code, text = client.docmd("AUTH", "PLAIN " + token)
            if code != 235:
                raise smtplib.SMTPAuthenticationError(code, text)
        with tally.lock:
            tally.setup_ms.append((time.perf_counter() - started) * 1000)
        stage = "transaction"
        for n in range(plan.messages):
            serial = index * plan.messages + n
            token = f"{plan.run_id}-{serial}"
            foreign = plan.foreign_every > 0 and serial % plan.foreign_every == plan.foreign_every - 1
            sender = account["foreign_sender"] if foreign else account["sender"]
            code = _transaction(client, plan, tally, sender, token)
            with tally.lock:
                if code == 250 and not foreign:
                    tally.accepted.append(token)
                elif code == 553 and foreign:
                    tally.refused_as_expected += 1
                elif code == 250 and foreign and not account.get("login"):
                    # The baseline checks no sender: a foreign one is a message like any other.
                    tally.accepted.append(token)
                elif 400 <= code < 500:
                    tally.deferred.append(token)
                else:
                    tally.wrong.append({"token": token, "foreign": foreign, "code": code})
        stage = "quit"
        client.quit()
        with tally.lock:
            tally.sessions_done += 1
    except (OSError, smtplib.SMTPException) as exc:
        tally.error(stage, exc)
        client.close()
    return tls_session


def _client(plan, tally, deadline):
    context = ssl.create_default_context()
    tls_session = None
    while (index := tally.take_session(plan, deadline)) is not None:
        tls_session = _session(plan, tally, index, context, tls_session)


def _percentile(values, fraction):
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(fraction * len(ordered)))], 2)


def _run_threads(plan):
    tally = Tally()
    deadline = time.monotonic() + plan.seconds if plan.seconds else None
    threads = [threading.Thread(target=_client, args=(plan, tally, deadline)) for _ in range(plan.clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {
        "sessions": tally.sessions_done,
        "accepted": tally.accepted,
        "unanswered": tally.unanswered,
        "deferred": tally.deferred,
        "refused_as_expected": tally.refused_as_expected,
        "wrong": tally.wrong,
        "errors": tally.errors,
        "transaction_ms": tally.transaction_ms,
        "setup_ms": tally.setup_ms,
    }


def _run_part(args):
    raw, part = args
    return _run_threads(Plan(raw | part))


def run(plan):
    """Play the plan; with processes > 1, its clients and sessions are shared
    out among that many processes, so that the clients' own work is not
    serialised by one interpreter lock."""
    started = time.monotonic()
    if plan.processes <= 1:
        parts = [_run_threads(plan)]
    else:
        parts_plan = []
        for n in range(plan.processes):
            part = {"clients": plan.clients // plan.processes + (n < plan.clients % plan.processes)}
            if plan.sessions is not None:
                part["sessions"] = plan.sessions // plan.processes + (n < plan.sessions % plan.processes)
            part["run_id"] = f"{plan.run_id}.{n}"
            parts_plan.append((plan.raw, part))
        with multiprocessing.get_context("fork").Pool(plan.processes) as pool:
            parts = pool.map(_run_part, parts_plan)
    elapsed = time.monotonic() - started
    merged = {key: [] for key in ("accepted", "unanswered", "deferred", "wrong", "transaction_ms", "setup_ms")}
    errors, sessions, refused = {}, 0, 0
    for part in parts:
        for key, values in merged.items():
            values.extend(part[key])
        sessions += part["sessions"]
        refused += part["refused_as_expected"]
        for key, entry in part["errors"].items():
            errors.setdefault(key, {"count": 0, "example": entry["example"]})["count"] += entry["count"]
    return {
        "elapsed": round(elapsed, 3),
        "sessions": sessions,
        "accepted": merged["accepted"],
        "unanswered": merged["unanswered"],
        "deferred": merged["deferred"],
        "refused_as_expected": refused,
        "wrong": merged["wrong"],
        "errors": errors,
        "messages_per_s": round(len(merged["accepted"]) / elapsed, 2),
        "sessions_per_s": round(sessions / elapsed, 2),
        "transaction_ms": {key: _percentile(merged["transaction_ms"], q) for key, q in (("p50", 0.5), ("p99", 0.99))},
        "setup_ms": {key: _percentile(merged["setup_ms"], q) for key, q in (("p50", 0.5), ("p99", 0.99))},
    }


def main():
    arg = sys.argv[1]
    raw = json.loads(pathlib.Path(arg).read_text() if arg.startswith("/") else base64.b64decode(arg))
    print(json.dumps(run(Plan(raw))))


if __name__ == "__main__":
    main()
