"""Benchmark: the milter's own CPU a message, signing against the From check alone.

    .venv/bin/python benchmarks/milter_signing.py [--messages 2000] [--rounds 3] [--profile FILE]

One milter (``python -m from_check``, as its service runs it) serves two sockets
from one process, the way the load benchmark's two listeners use it:
- ``check_socket``, **the baseline**: the From check alone (the unsigned listener);
- ``socket``: the From check and the two DKIM signatures (RSA-2048 and Ed25519).
A client speaks to each in turn as Postfix 3.7 does (``services/from_check/tests/milter_client.py``):
the headers of a message from alice, the end of the headers, then for a signing
socket the body (2 kB, in one chunk as Postfix sends up to 64 kB) and the end of
the message, until the signatures and the accept come back. One and ten messages
a connection. Each figure is the milter process's CPU (utime + stime from
/proc) a message, median of the rounds, the two sockets measured alternately in
each round; the difference is what signing adds in the milter, beside the
signatures alone (``from_check.dkim_sign.sign`` in this process: their floor).
No TLS, no Postfix: only the milter's share of ``scripts/benchmark``'s
"signing adds" figure. ``--profile FILE`` runs the milter under cProfile and
writes its statistics to FILE (the figures then include the profiler's cost).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import signal
import statistics
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
SERVICE = REPO / "services" / "from_check"
PATHS = [SERVICE, SERVICE / "tests", REPO / "collections", REPO / "services" / "sender_validation"]
sys.path[:0] = [str(path) for path in PATHS]
from ansible_collections.mailops.submission.plugins.module_utils.dkim_rules import (  # noqa: E402
    OVERSIGNED,
    SIGNED_HEADERS,
)
from conftest import ACCOUNTS, build  # noqa: E402
from from_check.dkim_sign import BodyHasher, HeaderChoice, sign  # noqa: E402
from from_check.keyring import Keyring  # noqa: E402
from milter_client import Postfix  # noqa: E402
from test_milter_signing import Keys  # noqa: E402

HEADERS = [
    ("From", "Alice <alice@runbox.com>"),
    ("To", "bob@example.org"),
    ("Subject", "A benchmark"),
    ("Date", "Mon, 07 Dec 2026 03:00:00 +0000"),
    ("Message-ID", "<1@runbox.com>"),
    ("MIME-Version", "1.0"),
    ("Content-Type", "text/plain; charset=utf-8"),
]
LINE = b"The quick brown fox  jumps over the lazy dog, again and again.\r\n"
BODY = LINE * (2048 // len(LINE))
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """utime + stime of a process, in seconds."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def wait_for(path, process, timeout=10):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the milter did not open {path} (exit code {process.poll()})")
        time.sleep(0.01)


def one_message(postfix, signing):
    postfix.headers("alice@runbox.com", HEADERS)
    command, _ = postfix.receive()
    if not signing:
        assert command == b"a", command
        return
    assert command == b"c", command
    postfix.send(b"B", BODY)
    postfix.send(b"E")
    inserted = 0
    while True:
        command, _ = postfix.receive()
        if command != b"i":
            break
        inserted += 1
    assert (command, inserted) == (b"a", 2), (command, inserted)


def run(path, pid, messages, per_connection, signing):
    """The milter's CPU seconds a message for messages sent per_connection a connection."""
    before = cpu_seconds(pid)
    for _ in range(messages // per_connection):
        postfix = Postfix(path)
        postfix.negotiate()
        for _ in range(per_connection):
            one_message(postfix, signing)
        postfix.send(b"Q")
        postfix.socket.close()
    return (cpu_seconds(pid) - before) / messages


def signatures_alone(keys_manifest, messages):
    """CPU seconds of the two signatures and the body hash, in this process,
    with the milter's keys and header choice."""
    keys = Keyring(str(keys_manifest)).signing_keys("runbox.com")
    headers = [(name.encode(), value.encode()) for name, value in HEADERS]
    choice = HeaderChoice(SIGNED_HEADERS, OVERSIGNED)
    start = time.process_time()
    for _ in range(messages):
        hasher = BodyHasher()
        hasher.update(BODY)
        sign(keys, headers, hasher.digest(), choice)
    return (time.process_time() - start) / messages


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", metavar="FILE", help="run the milter under cProfile, statistics to FILE")
    args = parser.parse_args()
    if args.messages < 10 or args.rounds < 1:
        parser.error(f"--messages {args.messages} and --rounds {args.rounds}: at least 10 and 1")
    with tempfile.TemporaryDirectory() as temporary:
        directory = pathlib.Path(temporary)
        (directory / "dkim").mkdir()
        keys = Keys(directory / "dkim")
        keys.add("runbox.com")
        sockets = {name: str(directory / f"{name}.sock") for name in ("socket", "check_socket")}
        config = {
            **{name: f"unix:{path}" for name, path in sockets.items()},
            "lmdb_tables": [build(directory, "sender_logins_accounts", ACCOUNTS)],
            "dkim": {"manifest": str(keys.manifest)},
        }
        (directory / "config.json").write_text(json.dumps(config))
        command = [sys.executable, "-m", "from_check", str(directory / "config.json")]
        if args.profile:
            command[1:1] = ["-m", "cProfile", "-o", os.path.abspath(args.profile)]
        environment = {**os.environ, "PYTHONPATH": os.pathsep.join(str(path) for path in PATHS)}
        milter = subprocess.Popen(command, env=environment)
        try:
            for path in sockets.values():
                wait_for(path, milter)
            # Warm up both sockets: keys read, threads started, code paths hot.
            for signing, path in ((False, sockets["check_socket"]), (True, sockets["socket"])):
                run(path, milter.pid, 50, 10, signing)
            figures = {}
            for _ in range(args.rounds):
                for per_connection in (1, 10):
                    for signing, path in ((False, sockets["check_socket"]), (True, sockets["socket"])):
                        figure = run(path, milter.pid, args.messages, per_connection, signing)
                        figures.setdefault((per_connection, signing), []).append(figure)
            alone = statistics.median(signatures_alone(keys.manifest, 300) for _ in range(args.rounds))
        finally:
            # cProfile writes its statistics when the milter is interrupted.
            milter.send_signal(signal.SIGINT if args.profile else signal.SIGTERM)
            milter.wait(30)
    print(f"\nThe milter's CPU a message (median of {args.rounds} rounds of {args.messages} messages, 2 kB body)\n")
    print("| messages a connection | check alone (baseline) ms | with signing ms | ratio | signing adds ms |")
    print("|---:|---:|---:|---:|---:|")
    for per_connection in (1, 10):
        base = statistics.median(figures[(per_connection, False)]) * 1000
        signed = statistics.median(figures[(per_connection, True)]) * 1000
        print(f"| {per_connection} | {base:.3f} | {signed:.3f} | {signed / base:.2f} | {signed - base:.3f} |")
    print(f"\nThe two signatures and the body hash alone, in this process: {alone * 1000:.3f} ms a message")
    rounds = {
        f"{n}/{'signed' if signed else 'check'}": [round(v * 1000, 3) for v in values]
        for (n, signed), values in figures.items()
    }
    print("Each round's figures (ms):", rounds)


if __name__ == "__main__":
    main()
