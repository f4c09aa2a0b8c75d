"""What the sender_allowlist module costs on the fleet database, against psql's
\\copy of the same pairs, side by side in one run.

Runs on the fleet's database host (molecule/fleet's fleet-db), as root, with
the collection copied beside it and Debian's ansible-core installed (the
module runs as Ansible runs it, from its file with its arguments):

    python3 fleet_bulk_load.py COLLECTIONS_DIR [--pairs 1000000] [--rounds 3]

In a scratch database with the store's schema (never the service's), each
round times:
- copy: `psql -c "\\copy validated_senders ... FROM file"` of N pairs into an
  empty table (the baseline);
- load: the module with src (the same N pairs) and exclusive, into an empty
  table (target: at most 1.5x copy);
- no-op: the module again with the same src, nothing to change (target: at
  most 0.1x copy);
- one entry: the module adding one pair to the N (entries only; target: at
  most 0.05x copy);
and prints the medians and the ratios to copy.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

DATABASE = "allowlist_bench"


def psql(*args, database=DATABASE):
    return subprocess.run(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-U", "postgres", "-d", database, *args],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def run_module(collections, module_args):
    path = os.path.join(collections, "ansible_collections/mailops/submission/plugins/modules/sender_allowlist.py")
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump({"ANSIBLE_MODULE_ARGS": module_args}, handle)
    env = dict(os.environ, PYTHONPATH=collections)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, path, handle.name], capture_output=True, text=True, env=env, check=False)
    elapsed = time.perf_counter() - started
    os.unlink(handle.name)
    result = json.loads(done.stdout)
    if result.get("failed"):
        sys.exit(f"the module failed: {result.get('msg')}")
    return elapsed, result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("collections", help="the directory that holds ansible_collections/mailops/submission")
    parser.add_argument("--pairs", type=int, default=1000000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sys.path.insert(0, args.collections)
    from ansible_collections.mailops.submission.plugins.module_utils.validated_store import MIGRATIONS  # noqa: PLC0415

    subprocess.run(["dropdb", "-U", "postgres", "--if-exists", DATABASE], check=True)
    subprocess.run(["createdb", "-U", "postgres", DATABASE], check=True)
    for _, statements in MIGRATIONS:
        for statement in statements:
            psql("-c", statement)
    work = tempfile.mkdtemp(prefix="allowlist-bench.")
    src, tsv = os.path.join(work, "pairs"), os.path.join(work, "pairs.tsv")
    now = int(time.time())
    with open(src, "w", encoding="ascii") as pairs, open(tsv, "w", encoding="ascii") as rows:
        for n in range(args.pairs):
            sender, login = f"user{n}@ext{n % 997}.example", f"login{n % 50000}@runbox.com"
            pairs.write(f"{sender} {login}\n")
            rows.write(f"{sender}\t{login}\tinventory\t{now}\n")
    base = {"database": DATABASE, "login_user": "postgres"}
    times = {"copy": [], "load": [], "no-op": [], "one entry": []}
    for round_number in range(args.rounds):
        psql("-c", "TRUNCATE validated_senders")
        started = time.perf_counter()
        psql("-c", f"\\copy validated_senders (sender, login, source, validated_at) FROM '{tsv}'")
        times["copy"].append(time.perf_counter() - started)
        psql("-c", "TRUNCATE validated_senders")
        elapsed, result = run_module(args.collections, dict(base, src=src, exclusive=True))
        assert result["added"] == args.pairs, result
        times["load"].append(elapsed)
        elapsed, result = run_module(args.collections, dict(base, src=src, exclusive=True))
        assert not result["changed"], result
        times["no-op"].append(elapsed)
        entry = {"sender": f"new{round_number}@gmail.example", "login": "login1@runbox.com"}
        elapsed, result = run_module(args.collections, dict(base, entries=[entry]))
        assert result["added"] == 1 and result["pairs"] == args.pairs + 1, result
        times["one entry"].append(elapsed)
    copy = statistics.median(times["copy"])
    print(f"{args.pairs} pairs, {args.rounds} rounds, medians:")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"  {name:10} {median:8.3f} s  {median / copy:6.3f}x copy")
    subprocess.run(["dropdb", "-U", "postgres", DATABASE], check=True)


if __name__ == "__main__":
    main()
