"""What each per-login limit costs postfwd: policy requests straight to its socket.

Runs on a host with Debian's postfwd (an MTA of molecule/benchmark or default):

    python3 postfwd_cost.py [--requests 2000] [--clients 8]

It starts a private postfwd2 per rule set, in turn (its own policy socket,
counter-process socket and pid file in a temporary directory, so that the
host's own postfwd is not touched; the flags roles/submission_ratelimit gives
it), sends
the same DATA-stage requests from --clients connections for 200 logins, and
prints the CPU that all of postfwd's processes used a request, and the ratio
to a rule set that counts nothing, all from the same run:
- none: one rule that never matches (postfwd's own cost a request);
- one: the messages-an-hour limit;
- four: the four default limits (messages and recipients, an hour and a day);
- four+own: the four, and four more for a login with limits of its own, as the
  local inventory has.
"""

import argparse
import concurrent.futures
import os
import pathlib
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "collections"))
from ansible_collections.mailops.submission.plugins.module_utils.login_limits import postfwd_rules  # noqa: E402

POSTFWD = "/usr/sbin/postfwd2"
# High enough that no request is refused: the cost of counting, not of refusing.
DEFAULTS = {
    "messages_per_hour": 10**7,
    "messages_per_day": 10**8,
    "recipients_per_hour": 10**7,
    "recipients_per_day": 10**8,
}
OWN = {"burst@runbox.com": {"messages_per_hour": 4, "recipients_per_hour": 10}}
RULE_SETS = {
    "none": ["id=NONE; protocol_state==NEVER; action=DUNNO"],
    "one": [r for r in postfwd_rules(DEFAULTS) if r.startswith("id=DEFAULT_MESSAGES_PER_HOUR;")],
    "four": postfwd_rules(DEFAULTS),
    "four+own": postfwd_rules(DEFAULTS, OWN),
}


def ticks_of(pids):
    """CPU clock ticks (user, system, and of waited-for children) of these processes."""
    total = 0
    for pid in pids:
        try:
            fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += sum(int(field) for field in fields[11:15])
    return total


def postfwd_pids(pidfile):
    """The master in pidfile and every process below it."""
    master = int(pathlib.Path(pidfile).read_text().split()[0])
    out = subprocess.run(["ps", "-eo", "pid=,ppid="], capture_output=True, text=True, check=True).stdout
    children = {}
    for line in out.splitlines():
        pid, ppid = (int(x) for x in line.split())
        children.setdefault(ppid, []).append(pid)
    pids, todo = [], [master]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        todo += children.get(pid, [])
    return pids


def client(socket_path, requests, offset):
    import socket  # noqa: PLC0415 (a thread's own import keeps the module's start cheap)

    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(socket_path)
        for n in range(requests):
            login = f"load{(offset + n) % 200:03d}@runbox.com"
            sock.sendall(
                f"request=smtpd_access_policy\nprotocol_state=DATA\nsasl_username={login}\n"
                f"recipient_count=1\nclient_address=127.0.0.1\n\n".encode()
            )
            answer = b""
            while not answer.endswith(b"\n\n"):
                answer += sock.recv(4096)
            if not answer.startswith(b"action=DUNNO"):
                raise SystemExit(f"postfwd refused a request: {answer!r}")


def measure(name, rules, args, workdir):
    config, socket_path, cache_path, pidfile = (
        # Named by position: postfwd takes no "+" in a socket's path.
        os.path.join(workdir, f"set{list(RULE_SETS).index(name)}.{suffix}")
        for suffix in ("cf", "sock", "cache", "pid")
    )
    pathlib.Path(config).write_text("\n".join(rules) + "\n")
    user = ["--user", "root", "--group", "root"] if os.geteuid() == 0 else []
    subprocess.run(
        [
            *(POSTFWD, "--daemon", "--file", config, "--pidfile", pidfile),
            *("--proto", "unix", "--port", socket_path, "--cache_proto", "unix", "--cache_port", cache_path),
            *("--cache", "0", "--summary", "0", "--norulestats", "--noidlestats", *user),
        ],
        check=True,
        capture_output=True,
    )
    try:
        for _ in range(300):
            if os.path.exists(socket_path):
                break
            time.sleep(0.1)
        else:
            raise SystemExit(f"postfwd made no socket {socket_path} in 30 s")
        pids = postfwd_pids(pidfile)
        before, started = ticks_of(pids), time.monotonic()
        per_client = args.requests // args.clients
        with concurrent.futures.ThreadPoolExecutor(args.clients) as pool:
            list(pool.map(lambda c: client(socket_path, per_client, c * per_client), range(args.clients)))
        elapsed = time.monotonic() - started
        used = ticks_of(postfwd_pids(pidfile)) - before
    finally:
        subprocess.run([POSTFWD, "--file", config, "--pidfile", pidfile, "--kill"], capture_output=True, check=False)
    requests = per_client * args.clients
    return {"ms": used * 1000 / os.sysconf("SC_CLK_TCK") / requests, "per_s": requests / elapsed}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="postfwd-cost-") as workdir:
        results = {name: measure(name, rules, args, workdir) for name, rules in RULE_SETS.items()}
    base = results["none"]["ms"]
    print(f"{args.requests} DATA-stage requests from {args.clients} clients, postfwd {POSTFWD}")
    print("| rules | limits met a request | CPU ms a request | ratio to none | requests/s |")
    print("|---|---|---|---|---|")
    for name, result in results.items():
        met = {"none": 0, "one": 1, "four": 4, "four+own": 4}[name]
        print(f"| {name} | {met} | {result['ms']:.2f} | {result['ms'] / base:.1f}x | {result['per_s']:.0f} |")


if __name__ == "__main__":
    main()
