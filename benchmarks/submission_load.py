"""Load benchmark: the submission service against a peer and a plaintext limit, side by side.

Runs on the MTA host that molecule/benchmark builds (scripts/benchmark does it
all and prints the result):

    python3 submission_load.py [--rounds 3] [--clients 20] [--messages 1 10]

For each number of messages a session, it rotates runs among three setups
(benchmarks/comparison.yml), all relaying to the same sink:
- baseline: the same Postfix package, stock settings, plaintext, no AUTH
  (127.0.0.1:2526), a limit rather than a peer;
- peer: the submission setup a careful operator writes from the Postfix and
  Dovecot documentation (127.0.0.1:2587: TLS required, AUTH through the same
  Dovecot, reject_sender_login_mismatch on one lmdb table, no postscreen);
- submission: the service as deployed;
- unchecked: the same service on a listener of the benchmark inventory whose
  header_from_check, dkim_signing and rate_limits are false (127.0.0.3,
  unchecked.<domain>): everything but the header-From milter, so that the
  milter's cost (check, signing, counting) is the difference;
- unlimited: the same on a listener whose rate_limits is false (127.0.0.4,
  unlimited.<domain>): everything but the per-login limits (the milter's count
  in Redis), so that the limits' cost per message is the difference;
- unsigned: the same on a listener whose dkim_signing is false (127.0.0.5,
  unsigned.<domain>): the From check without the two DKIM signatures, so that
  signing's cost per message is the difference.
Against the peer and the service a session is STARTTLS, AUTH as generated
accounts (bare and user%domain logins mixed), then the messages; a share of
senders belong to another account and must be refused. After each run it
waits until the queues are empty and checks that every message answered 250
reached the sink exactly once, then reads the CPU time the Postfix, Dovecot
milter and Redis process trees used (load and delivery). It prints medians over the
rounds, the service's ratios to the peer and to the baseline, the milter's
share of the server CPU a message costs, and the time a session from a client
address never seen before takes to be ready to send.
"""

import argparse
import dataclasses
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import time
import uuid

HERE = pathlib.Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]
import smtp_load  # noqa: E402
from load_accounts import load_accounts  # noqa: E402

# The service's throughput at least the peer's (issue 10), by messages a session.
PEER_TARGETS = {1: 1.0, 10: 1.0}
# Server CPU a message with the header-From milter, against without (issue 13).
MILTER_TARGETS = {10: 1.10}
# Server CPU both DKIM signatures may add to a message, in ms (issue 24).
SIGNING_TARGET_MS = 1.5
# Server CPU the per-login limits may add to a message, in ms (issue 25).
LIMITS_TARGET_MS = 0.3


def accounts(count, domain, password):
    """The load's accounts: the inventory's (load_accounts.py), each with the
    benchmark's password and another account's address as its foreign sender."""
    out = [{"login": a["login"], "sender": a["address"]} for a in load_accounts(count, domain)]
    for n, account in enumerate(out):
        account["password"] = password
        account["foreign_sender"] = out[(n + 1) % count]["sender"]
    return out


def process_table():
    table = {}
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        # utime, stime, cutime, cstime: a child's time moves into its parent's
        # cutime/cstime when the parent reaps it, so a tree's sum only grows.
        table[int(entry.name)] = (int(fields[1]), sum(int(f) for f in fields[11:15]))
    return table


def tree_cpu_seconds(root_pid, table):
    children = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    total, todo = 0, [root_pid]
    while todo:
        pid = todo.pop()
        if pid in table:
            total += table[pid][1]
            todo.extend(children.get(pid, []))
    return total / os.sysconf("SC_CLK_TCK")


def read_pid(path):
    return int(pathlib.Path(path).read_text().split()[0])


def unit_pid(unit):
    """The main process of a systemd unit, or None when it does not run."""
    out = subprocess.run(
        ["systemctl", "show", "--property=MainPID", "--value", unit], capture_output=True, text=True, check=False
    ).stdout.strip()
    return int(out) if out.isdigit() and out != "0" else None


@dataclasses.dataclass
class Setup:
    name: str
    config_dir: str
    queue_dir: str
    plan: dict
    with_dovecot: bool
    with_milter: bool = False
    with_counter: bool = False
    # DKIM-Signature headers each message must arrive with.
    signatures: int = 0

    def cpu(self):
        table = process_table()
        seconds = {"postfix": tree_cpu_seconds(read_pid(f"{self.queue_dir}/pid/master.pid"), table)}
        if self.with_dovecot:
            seconds["dovecot"] = tree_cpu_seconds(read_pid("/run/dovecot/master.pid"), table)
        if self.with_milter:
            # Counted for the service with and without it: idle, it costs nothing.
            pid = unit_pid("from-check")
            seconds["milter"] = tree_cpu_seconds(pid, table) if pid else 0
        if self.with_counter:
            # The per-login limits' counter store: its CPU is the server's too.
            pid = unit_pid("redis-server")
            seconds["counter"] = tree_cpu_seconds(pid, table) if pid else 0
        return seconds

    def queue_empty(self):
        out = subprocess.run(
            ["postqueue", "-c", self.config_dir, "-p"], capture_output=True, text=True, check=False
        ).stdout
        return "Mail queue is empty" in out


def sink_tokens(maildir, skip):
    """token -> copies, and token -> DKIM-Signature headers, for the messages
    the sink stored that are not in skip."""
    counts, signatures = {}, {}
    for sub in ("new", "cur"):
        for entry in os.scandir(os.path.join(maildir, sub)):
            if entry.name in skip:
                continue
            token, signed = None, 0
            with open(entry.path, "rb") as handle:
                for line in handle:
                    if line.startswith(b"X-Load-Token: "):
                        token = line.split(b" ", 1)[1].strip().decode()
                    elif line.startswith(b"DKIM-Signature:"):
                        signed += 1
                    elif line in (b"\n", b"\r\n"):
                        break
            if token:
                counts[token] = counts.get(token, 0) + 1
                signatures[token] = signed
    return counts, signatures


def sink_files(maildir):
    return {e.name for sub in ("new", "cur") for e in os.scandir(os.path.join(maildir, sub))}


def check_delivery(result, counts, run_id, signatures=None, expected=0):
    """Every 250 exactly once, with the expected DKIM signatures; an unanswered
    message at most once; nothing else."""
    problems = []
    wrongly_signed = [t for t, n in (signatures or {}).items() if t.startswith(run_id) and n != expected]
    if wrongly_signed:
        problems.append(f"{len(wrongly_signed)} without {expected} DKIM signatures: {sorted(wrongly_signed)[:5]}")
    accepted, unanswered = set(result["accepted"]), set(result["unanswered"])
    missing = [t for t in accepted if counts.get(t, 0) == 0]
    doubled = [t for t, n in counts.items() if n > 1]
    strangers = [t for t in counts if t.startswith(run_id) and t not in accepted | unanswered]
    for label, tokens in (("answered 250, not in the sink", missing), ("in the sink twice", doubled)):
        if tokens:
            problems.append(f"{len(tokens)} {label}: {sorted(tokens)[:5]}")
    if strangers:
        problems.append(f"{len(strangers)} in the sink but refused: {sorted(strangers)[:5]}")
    if result["wrong"]:
        problems.append(f"{len(result['wrong'])} wrong answers: {result['wrong'][:5]}")
    if result["deferred"]:
        problems.append(f"{len(result['deferred'])} answered 4xx: {sorted(result['deferred'])[:5]}")
    if result["errors"]:
        problems.append(f"client errors: {result['errors']}")
    return problems


def one_run(setup, messages, args):
    run_id = uuid.uuid4().hex[:12]
    plan = dict(
        setup.plan, run_id=run_id, messages_per_session=messages, clients=args.clients, processes=args.processes
    )
    plan["sessions"] = max(args.clients, args.transactions // messages)
    before_files = sink_files(args.sink)
    cpu_before = setup.cpu()
    result = smtp_load.run(smtp_load.Plan(plan))
    deadline = time.monotonic() + 600
    while not setup.queue_empty():
        if time.monotonic() > deadline:
            raise SystemExit(f"{setup.name}: the queue did not drain in 600 s")
        time.sleep(0.5)
    cpu_after = setup.cpu()
    counts, signatures = sink_tokens(args.sink, before_files)
    problems = check_delivery(result, counts, run_id, signatures, setup.signatures)
    accepted = len(result["accepted"])
    cpu = {k: cpu_after[k] - cpu_before[k] for k in cpu_after}
    return {
        "setup": setup.name,
        "messages_per_s": result["messages_per_s"],
        "sessions_per_s": result["sessions_per_s"],
        "transaction_ms": result["transaction_ms"],
        "setup_ms": result["setup_ms"],
        "accepted": accepted,
        "refused": result["refused_as_expected"],
        "cpu_per_1000": {k: round(v * 1000 / max(accepted, 1), 2) for k, v in cpu.items()},
        "server_cpu_per_1000": round(sum(cpu.values()) * 1000 / max(accepted, 1), 2),
        "problems": problems,
    }


def median_of(runs, *path):
    values = []
    for run in runs:
        value = run
        for key in path:
            value = value[key]
        values.append(value)
    return round(statistics.median(values), 2)


def machine():
    release = dict(
        line.split("=", 1) for line in pathlib.Path("/etc/os-release").read_text().splitlines() if "=" in line
    )
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    postfix = subprocess.run(
        ["postconf", "-h", "mail_version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    dovecot = subprocess.run(["dovecot", "--version"], capture_output=True, text=True, check=False).stdout.strip()
    return (
        f"{release.get('PRETTY_NAME', '?').strip(chr(34))}, {os.cpu_count()} cores ({cpu}), "
        f"Postfix {postfix}, Dovecot {dovecot}, Python {platform.python_version()}"
    )


def first_contact(setups, args):
    """Connect to ready-to-send (AUTH done; EHLO for the baseline) for sessions
    that each come from a client address never seen before, a few at a time."""
    print()
    print(f"session setup from a never-seen client address ({args.first_contact} sessions a setup, 4 clients):")
    print("| setup | setup p50 ms | setup p99 ms |")
    print("|---|---|---|")
    failed = False
    for setup in setups:
        plan = dict(
            setup.plan,
            run_id=uuid.uuid4().hex[:12],
            messages_per_session=1,
            clients=4,
            processes=1,
            sessions=args.first_contact,
            fresh_sources=True,
        )
        result = smtp_load.run(smtp_load.Plan(plan))
        if result["errors"] or result["sessions"] != args.first_contact:
            failed = True
            print(f"  PROBLEM {setup.name}: {result['sessions']} sessions, errors {result['errors']}")
        print(f"| {setup.name} | {result['setup_ms']['p50']} | {result['setup_ms']['p99']} |", flush=True)
    return failed


SERVICE_SETUPS = ("submission", "unchecked", "unlimited", "unsigned")


def print_summary(runs, args, names):
    """Medians over the rounds, and the service's ratios to the peer and the baseline."""
    print()
    header = "| messages/session | setup | msg/s | sessions/s | txn p50 ms | txn p99 ms | setup p50 ms | setup p99 ms |"
    print(
        header + " Postfix CPU s/1000 | Dovecot CPU s/1000 | milter CPU s/1000 | Redis CPU s/1000 | server CPU s/1000 |"
    )
    print("|" + "---|" * 13)
    summary = {}
    for messages in args.messages:
        for name in names:
            mine = [r for r in runs if r["messages"] == messages and r["setup"] == name]
            row = {
                "msg": median_of(mine, "messages_per_s"),
                "ses": median_of(mine, "sessions_per_s"),
                "p50": median_of(mine, "transaction_ms", "p50"),
                "p99": median_of(mine, "transaction_ms", "p99"),
                "s50": median_of(mine, "setup_ms", "p50"),
                "s99": median_of(mine, "setup_ms", "p99"),
                "pf": median_of(mine, "cpu_per_1000", "postfix"),
                "dc": median_of(mine, "cpu_per_1000", "dovecot") if name != "baseline" else "-",
                "mi": median_of(mine, "cpu_per_1000", "milter") if name in SERVICE_SETUPS else "-",
                "po": median_of(mine, "cpu_per_1000", "counter") if name in SERVICE_SETUPS else "-",
                "all": median_of(mine, "server_cpu_per_1000"),
            }
            summary[(messages, name)] = row
            print(
                f"| {messages} | {name} | {row['msg']} | {row['ses']} | {row['p50']} | {row['p99']} | "
                f"{row['s50']} | {row['s99']} | {row['pf']} | {row['dc']} | {row['mi']} | {row['po']} | {row['all']} |"
            )
    print()
    for messages in args.messages:
        service_rate = summary[(messages, "submission")]["msg"]
        to_peer = service_rate / summary[(messages, "peer")]["msg"]
        to_baseline = service_rate / summary[(messages, "baseline")]["msg"]
        target = PEER_TARGETS.get(messages)
        verdict = "" if target is None else f" (target >= {target}: {'met' if to_peer >= target else 'NOT met'})"
        print(
            f"at {args.clients} clients, {messages} message(s) a session: the service is {to_peer:.2f}x the peer"
            f"{verdict} and {to_baseline:.2f}x the plaintext baseline"
        )
    floor = signatures_alone_ms() if any((m, "unsigned") in summary for m in args.messages) else None
    if floor is not None:
        print(f"the two signatures alone through OpenSSL (RSA-2048 and Ed25519), in this run: {floor:.3f} ms")
    for messages in args.messages:
        if (messages, "unsigned") in summary:
            signed, unsigned = summary[(messages, "submission")]["all"], summary[(messages, "unsigned")]["all"]
            added = signed - unsigned
            milter = summary[(messages, "submission")]["mi"] - summary[(messages, "unsigned")]["mi"]
            verdict = "met" if added <= SIGNING_TARGET_MS else "NOT met"
            print(
                f"{messages} message(s) a session: server CPU a message signed {signed} s/1000, unsigned "
                f"{unsigned} s/1000: signing adds {added:+.2f} ms a message (target <= {SIGNING_TARGET_MS}: {verdict}),"
                f" {added / floor:.2f}x the signatures alone; the milter's share {milter:+.2f} ms"
                f" ({milter / floor:.2f}x)"
            )
        if (messages, "unlimited") in summary:
            limited, unlimited = summary[(messages, "submission")]["all"], summary[(messages, "unlimited")]["all"]
            added = limited - unlimited
            milter = summary[(messages, "submission")]["mi"] - summary[(messages, "unlimited")]["mi"]
            redis = summary[(messages, "submission")]["po"] - summary[(messages, "unlimited")]["po"]
            verdict = "met" if added <= LIMITS_TARGET_MS else "NOT met"
            print(
                f"{messages} message(s) a session: server CPU a message with the per-login limits {limited} s/1000, "
                f"without {unlimited} s/1000: {limited / unlimited:.2f}x, the limits add {added:+.2f} ms a message"
                f" (target <= {LIMITS_TARGET_MS}: {verdict}; the milter's share {milter:+.2f} ms,"
                f" Redis's {redis:+.2f} ms)"
            )
        if (messages, "unchecked") not in summary:
            continue
        checked, unchecked = summary[(messages, "submission")]["all"], summary[(messages, "unchecked")]["all"]
        ratio = checked / unchecked
        target = MILTER_TARGETS.get(messages)
        verdict = "" if target is None else f" (target <= {target}: {'met' if ratio <= target else 'NOT met'})"
        print(
            f"{messages} message(s) a session: server CPU a message with the header-From milter {checked} s/1000, "
            f"without {unchecked} s/1000: {ratio:.2f}x{verdict}"
        )


def signatures_alone_ms(count=300):
    """CPU time of one RSA-2048 and one Ed25519 signature (PKCS #1 v1.5, SHA-256)
    through OpenSSL (cryptography, as the milter signs), on this machine in this
    run: the floor of any signer, against which "signing adds" is read."""
    from cryptography.hazmat.primitives import hashes  # noqa: PLC0415 (only for this figure)
    from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa  # noqa: PLC0415

    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ed_key = ed25519.Ed25519PrivateKey.generate()
    data = b"a header block of about the size the milter signs\r\n" * 12
    started = time.process_time()
    for _ in range(count):
        rsa_key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        ed_key.sign(data)
    return (time.process_time() - started) * 1000 / count


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--messages", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--processes", type=int, default=os.cpu_count(), help="load generator processes")
    parser.add_argument("--transactions", type=int, default=2000, help="transactions per run")
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--password", default="bench-Load-pw1")
    parser.add_argument("--domain", default="runbox.com")
    parser.add_argument("--host", default="smtp.runbox.com")
    parser.add_argument("--port", type=int, default=587)
    parser.add_argument("--baseline-port", type=int, default=2526)
    parser.add_argument("--peer-port", type=int, default=2587)
    parser.add_argument(
        "--unchecked-host", default="unchecked.runbox.com", help="the service's listener without the milter; '': none"
    )
    parser.add_argument(
        "--unlimited-host",
        default="unlimited.runbox.com",
        help="the service's listener without the per-login limits; '': none",
    )
    parser.add_argument(
        "--unsigned-host",
        default="unsigned.runbox.com",
        help="the service's listener without DKIM signing; '': none",
    )
    parser.add_argument(
        "--first-contact", type=int, default=60, help="sessions from never-seen addresses per setup (0: none)"
    )
    parser.add_argument("--recipient", default="postmaster@example.net")
    parser.add_argument("--foreign-every", type=int, default=20, help="every n-th sender is another account's")
    parser.add_argument("--resume-tls", action="store_true", help="clients resume their TLS session")
    parser.add_argument("--sink", default="/var/lib/smtp-sink/Maildir")
    parser.add_argument("--json", action="store_true", help="print the runs as JSON too")
    return parser.parse_args()


def main():
    args = parse_args()
    common = {"recipient": args.recipient, "foreign_every": args.foreign_every, "timeout": 60}
    users = accounts(args.accounts, args.domain, args.password)
    baseline = Setup(
        "baseline",
        "/etc/postfix-baseline",
        "/var/spool/postfix-baseline",
        dict(
            common,
            host="127.0.0.1",
            port=args.baseline_port,
            starttls=False,
            accounts=[{"sender": a["sender"], "foreign_sender": a["foreign_sender"]} for a in users],
        ),
        with_dovecot=False,
    )
    tls = dict(common, host=args.host, starttls=True, resume_tls=args.resume_tls, accounts=users)
    peer = Setup(
        "peer", "/etc/postfix-peer", "/var/spool/postfix-peer", dict(tls, port=args.peer_port), with_dovecot=True
    )

    def service_on(name, host):
        """The deployed service on one of its listeners: its milter and Redis counted with it."""
        return Setup(
            name,
            "/etc/postfix",
            "/var/spool/postfix",
            dict(tls, host=host, port=args.port),
            with_dovecot=True,
            with_milter=True,
            with_counter=True,
            signatures=0 if name in ("unchecked", "unsigned") else 2,
        )

    setups = (baseline, peer, service_on("submission", args.host))
    # The same service where a listener turns the header-From check, the per-login limits or signing off.
    for name, host in (
        ("unchecked", args.unchecked_host),
        ("unlimited", args.unlimited_host),
        ("unsigned", args.unsigned_host),
    ):
        if host:
            setups += (service_on(name, host),)
    print(f"machine: {machine()}")
    print(
        f"load: {args.clients} clients in {args.processes} processes, "
        f"{args.transactions} transactions a run, {args.rounds} rounds, "
        f"{args.accounts} accounts, every {args.foreign_every}th sender foreign, "
        f"TLS {'resumed' if args.resume_tls else 'full handshake every session'}"
    )
    runs, failed = [], False
    for messages in args.messages:
        for round_no in range(args.rounds):
            # Each setup takes each place in the order in turn.
            shift = round_no % len(setups)
            for setup in setups[shift:] + setups[:shift]:
                run = one_run(setup, messages, args)
                run["messages"] = messages
                runs.append(run)
                for problem in run["problems"]:
                    failed = True
                    print(f"  PROBLEM {setup.name} M={messages} round {round_no + 1}: {problem}")
                print(
                    f"  M={messages} round {round_no + 1} {setup.name:10s} {run['messages_per_s']:8.1f} msg/s "
                    f"{run['sessions_per_s']:7.1f} sessions/s  txn p50 {run['transaction_ms']['p50']} ms "
                    f"p99 {run['transaction_ms']['p99']} ms  cpu/1000 {run['cpu_per_1000']}",
                    flush=True,
                )
    print_summary(runs, args, [setup.name for setup in setups])
    if args.first_contact:
        failed |= first_contact(setups, args)
    if args.json:
        print(json.dumps(runs))
    if failed:
        raise SystemExit("some messages were not handled as SMTP requires (PROBLEM lines above)")


if __name__ == "__main__":
    main()
