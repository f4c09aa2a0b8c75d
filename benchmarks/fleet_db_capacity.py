"""How many lookups a second the fleet database answers, for the capacity
arithmetic: pgbench from Debian's PostgreSQL, on the database host, side by
side with a `SELECT 1` baseline in the same run.

Runs on the fleet's database host (molecule/fleet's fleet-db), as root:

    python3 fleet_db_capacity.py [--seconds 10] [--clients 8]

Each query runs for --seconds from --clients connections over the local
socket, as simple queries (as Postfix and Dovecot send them; the MTAs keep
their connections open, so TLS costs a connection's start only and is not in
these figures). It prints the
transactions a second and the ratio to the baseline:
- select 1: what a round trip to the server costs;
- sender lookup: Postfix's and the milter's query (sender_logins view), half
  keys found, half not;
- password lookup: Dovecot's passdb query for a bare login.
"""

import argparse
import os
import re
import subprocess
import tempfile

QUERIES = {
    "select 1": "SELECT 1;",
    "sender lookup": (
        "\\set n random(1, 2)\n"
        "SELECT DISTINCT login FROM sender_logins"
        " WHERE sender = CASE :n WHEN 1 THEN 'alice@runbox.com' ELSE 'stranger' || :client_id || '@gmail.example' END;"
    ),
    "password lookup": (
        "SELECT login AS user, CASE WHEN left(password_hash, 1) = '{' THEN password_hash"
        " ELSE '{CRYPT}' || password_hash END AS password FROM accounts"
        " WHERE login = CASE WHEN strpos('alice', '@') = 0 THEN 'alice@runbox.com' ELSE 'alice' END;"
    ),
}


def pgbench(script, seconds, clients, database):
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as handle:
        handle.write(script + "\n")
    os.chmod(handle.name, 0o644)
    done = subprocess.run(
        [
            "pgbench",
            "-n",
            "-U",
            "postgres",
            "-f",
            handle.name,
            "-T",
            str(seconds),
            "-c",
            str(clients),
            "-j",
            "2",
            "-M",
            "simple",
            database,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    os.unlink(handle.name)
    return float(re.search(r"tps = ([0-9.]+)", done.stdout).group(1))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--database", default="submission")
    args = parser.parse_args()
    cores = os.cpu_count()
    results = {name: pgbench(script, args.seconds, args.clients, args.database) for name, script in QUERIES.items()}
    print(f"pgbench, {args.clients} clients, {args.seconds} s each, {cores} cores (pgbench itself on them too):")
    for name, tps in results.items():
        print(f"  {name:16} {tps:10.0f} a second  {tps / results['select 1']:5.2f}x select 1")


if __name__ == "__main__":
    main()
