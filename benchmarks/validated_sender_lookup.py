"""What the validated-senders store costs a MAIL FROM, against the lmdb table alone.

Runs on the host under test, against its own Postfix over loopback (stdlib
only, so the host's python3 runs it from stdin):

    docker exec -i -e SMTP_PASSWORD mta-debian12 python3 - --login alice \
        --table-sender alice.ext@gmail.example --store-sender bench@store.example \
        < benchmarks/validated_sender_lookup.py

One authenticated STARTTLS session; then, for every round, a transaction
(MAIL FROM, RCPT TO, RSET) as a sender that the lmdb table of inventory senders
holds, and one as a sender that only the store holds (Postfix asks the account
tables, misses, then asks the store). The order alternates from round to round.
With Postfix's default smtpd_delay_reject, the sender's login check runs at
RCPT TO, so each transaction times the check. Every answer must be 250; the
script fails otherwise. It prints the median of each and their ratio.

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
    start = time.perf_counter()
    code, reply = smtp.mail(sender)
    if code != 250:
        raise SystemExit(f"MAIL FROM:<{sender}>: {code} {reply!r}")
    code, reply = smtp.rcpt(recipient)
    elapsed = time.perf_counter() - start
    if code != 250:
        raise SystemExit(f"RCPT TO:<{recipient}> as {sender}: {code} {reply!r}")
    smtp.rset()
    return elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="smtp.runbox.com")
    parser.add_argument("--port", type=int, default=587)
    parser.add_argument("--login", required=True)
    parser.add_argument("--table-sender", required=True, help="a sender the lmdb table holds for --login")
    parser.add_argument("--store-sender", required=True, help="a sender only the store holds for --login")
    parser.add_argument("--recipient", default="postmaster@example.net")
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=50)
    options = parser.parse_args()
    password = os.environ.get("SMTP_PASSWORD")
    if not password:
        raise SystemExit("SMTP_PASSWORD is not set (the password never goes on a command line)")

    smtp = smtplib.SMTP(options.host, options.port, timeout=30)
    smtp.starttls(context=ssl.create_default_context())
    smtp.login(options.login, password)
    senders = {"table": options.table_sender, "store": options.store_sender}
    for _ in range(options.warmup):
        for sender in senders.values():
            transaction(smtp, sender, options.recipient)
    times = {name: [] for name in senders}
    for round_number in range(options.rounds):
        order = list(senders) if round_number % 2 == 0 else list(reversed(senders))
        for name in order:
            times[name].append(transaction(smtp, senders[name], options.recipient))
    smtp.quit()

    medians = {name: statistics.median(values) * 1000 for name, values in times.items()}
    print(f"rounds: {options.rounds} (after {options.warmup} to warm up), one session, alternating order")
    print("| sender found in | median MAIL FROM + RCPT TO (ms) | p90 (ms) |")
    print("|---|---:|---:|")
    for name, label in (("table", "the lmdb table"), ("store", "the store (after the tables miss)")):
        p90 = statistics.quantiles(times[name], n=10)[-1] * 1000
        print(f"| {label} | {medians[name]:.3f} | {p90:.3f} |")
    print(f"ratio store / table: {medians['store'] / medians['table']:.2f}")


if __name__ == "__main__":
    sys.exit(main())
