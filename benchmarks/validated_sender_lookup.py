"""What the validated-senders store costs a MAIL FROM, against the lmdb table alone.

Runs on the host under test, against its own Postfix over loopback (stdlib
only, so the host's python3 runs it from stdin):

    docker exec -i -e SMTP_PASSWORD mta-debian12 python3 - --login alice \
        --table-sender alice.ext@gmail.example --store-sender bench@store.example \
        < benchmarks/validated_sender_lookup.py

Authenticated STARTTLS sessions of 40 rounds each; in every round a
transaction (MAIL FROM, RCPT TO timed; then a one-line message, not timed) as
a sender that the lmdb account table holds, and one as
a sender that only the store holds (Postfix asks the account tables, misses,
then asks the store). The order alternates from round to round; a session's
setup is not timed.
With Postfix's default smtpd_delay_reject, the sender's login check runs at
RCPT TO, so each transaction times the check. Every answer must be 250; the
script fails otherwise. The messages go where the host relays (the test sink).
It prints the median of each and their ratio.

The store sender must be in the store for --login, and the table sender in
the table (scripts/benchmark-lookup puts the store sender there for the run).
"""

import argparse
import os
import smtplib
import ssl
import statistics
import sys
import time


def transaction(smtp, sender, recipient):
    """Time MAIL FROM and RCPT TO; then send a one-line message, untimed.

    The message is not optional: a transaction left without one keeps Postfix's
    in-flow tokens, and every later RCPT TO waits in_flow_delay (1 s) for one.
    """
    start = time.perf_counter()
    code, reply = smtp.mail(sender)
    if code != 250:
        raise SystemExit(f"MAIL FROM:<{sender}>: {code} {reply!r}")
    code, reply = smtp.rcpt(recipient)
    elapsed = time.perf_counter() - start
    if code != 250:
        raise SystemExit(f"RCPT TO:<{recipient}> as {sender}: {code} {reply!r}")
    code, reply = smtp.data(f"From: <{sender}>\r\nSubject: lookup benchmark\r\n\r\nx\r\n".encode())
    if code != 250:
        raise SystemExit(f"DATA as {sender}: {code} {reply!r}")
    return elapsed


ROUNDS_A_SESSION = 40


def session(options, password):
    smtp = smtplib.SMTP(options.host, options.port, timeout=30)
    smtp.starttls(context=ssl.create_default_context())
    smtp.login(options.login, password)
    return smtp


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="smtp.runbox.com")
    parser.add_argument("--port", type=int, default=587)
    parser.add_argument("--login", required=True)
    parser.add_argument("--table-sender", required=True, help="a sender the lmdb account table holds for --login")
    parser.add_argument("--store-sender", required=True, help="a sender only the store holds for --login")
    parser.add_argument("--recipient", default="postmaster@example.net")
    parser.add_argument("--rounds", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=20)
    options = parser.parse_args()
    password = os.environ.get("SMTP_PASSWORD")
    if not password:
        raise SystemExit("SMTP_PASSWORD is not set (the password never goes on a command line)")

    senders = {"table": options.table_sender, "store": options.store_sender}
    times = {name: [] for name in senders}
    smtp = None
    for round_number in range(-options.warmup, options.rounds):
        if round_number % ROUNDS_A_SESSION == 0 or smtp is None:
            if smtp is not None:
                smtp.quit()
            smtp = session(options, password)
        order = list(senders) if round_number % 2 == 0 else list(reversed(senders))
        for name in order:
            elapsed = transaction(smtp, senders[name], options.recipient)
            if round_number >= 0:
                times[name].append(elapsed)
    smtp.quit()

    medians = {name: statistics.median(values) * 1000 for name, values in times.items()}
    print(
        f"rounds: {options.rounds} (after {options.warmup} to warm up), {ROUNDS_A_SESSION} a session, alternating order"
    )
    print("| sender found in | median MAIL FROM + RCPT TO (ms) | p90 (ms) |")
    print("|---|---:|---:|")
    for name, label in (("table", "the lmdb account table"), ("store", "the store (after the tables miss)")):
        p90 = statistics.quantiles(times[name], n=10)[-1] * 1000
        print(f"| {label} | {medians[name]:.3f} | {p90:.3f} |")
    print(f"ratio store / table: {medians['store'] / medians['table']:.2f}")


if __name__ == "__main__":
    sys.exit(main())
