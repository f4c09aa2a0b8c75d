"""What a sender-login lookup costs in fleet mode: the fleet database through
proxymap, against the lmdb table a single host reads, side by side.

Runs on an MTA of the fleet (molecule/fleet), as root:

    python3 fleet_lookup.py [--keys 5000] [--rounds 3]

Builds an lmdb table with the database's pairs for the same keys, then asks
each table for the same keys with one `postmap -q -` process a table (one
connection, as a long-lived proxymap has), in alternating rounds, and prints
the median time a lookup took and the ratio to lmdb:
- lmdb: the single host's table (a file postmap maps);
- proxy:pgsql: what smtpd asks in fleet mode (Postfix's proxymap, then
  PostgreSQL over TLS on the database host);
- pgsql: the same query without proxymap (the database's own share).
Half the keys are in the table, half are not (a stranger's MAIL FROM).
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

PGSQL = "/etc/postfix/submission/sender_logins.pgsql"


def timed_lookups(table, keys_file):
    with open(keys_file, "rb") as keys:
        started = time.perf_counter()
        done = subprocess.run(["postmap", "-q", "-", table], stdin=keys, capture_output=True, check=False)
        elapsed = time.perf_counter() - started
    if done.returncode not in (0, 1):
        sys.exit(f"postmap -q - {table} failed: {done.stderr.decode()}")
    return elapsed, done.stdout


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    known = subprocess.run(
        ["postmap", "-q", "alice@runbox.com", f"pgsql:{PGSQL}"], capture_output=True, text=True, check=True
    ).stdout.strip()
    if not known:
        sys.exit("the fleet database does not answer for alice@runbox.com: is this an MTA of the fleet?")
    work = tempfile.mkdtemp(prefix="fleet-lookup.")
    found = ["alice@runbox.com", "alice.smith@runbox.com", "bob@hosted.example", "@hosted.example"]
    keys = [found[n % len(found)] if n % 2 == 0 else f"stranger{n}@gmail.example" for n in range(args.keys)]
    keys_file = os.path.join(work, "keys")
    with open(keys_file, "w", encoding="ascii") as handle:
        handle.writelines(key + "\n" for key in keys)
    source = os.path.join(work, "senders")
    with open(source, "w", encoding="ascii") as handle:
        for key in found:
            query = ["postmap", "-q", key, f"pgsql:{PGSQL}"]
            value = subprocess.run(query, capture_output=True, text=True, check=True).stdout
            handle.write(f"{key}\t{value.strip()}\n")
    subprocess.run(["postmap", f"lmdb:{source}"], check=True)
    tables = {"lmdb": f"lmdb:{source}", "proxy:pgsql": f"proxy:pgsql:{PGSQL}", "pgsql": f"pgsql:{PGSQL}"}
    times = {name: [] for name in tables}
    answers = {}
    for _ in range(args.rounds):
        for name, table in tables.items():
            elapsed, output = timed_lookups(table, keys_file)
            times[name].append(elapsed / len(keys))
            answers[name] = output
    if len(set(answers.values())) != 1:
        sys.exit("the tables gave different answers for the same keys; the comparison would be meaningless")
    baseline = statistics.median(times["lmdb"])
    print(f"{len(keys)} lookups a round, {args.rounds} rounds, median time a lookup:")
    for name in tables:
        median = statistics.median(times[name])
        print(f"  {name:12} {median * 1e6:9.1f} us  {median / baseline:7.1f}x lmdb")


if __name__ == "__main__":
    main()
