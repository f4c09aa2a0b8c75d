"""What one per-login count costs: the milter's own Redis client against redis-py's, side by side.

    python3 benchmarks/limit_counter.py [--calls 5000] [--in-flight 50] [--rounds 3]

Starts Debian's redis-server on a socket of its own and charges one message of
three recipients to 100 logins with the four default limits, through the
milter's counting script (services/from_check/from_check/limits.py), by:
- own: the milter's CounterStore (one connection on the event loop, calls pipelined);
- redis-py asyncio: redis.asyncio's client with the same script (a pool of connections);
- redis-py blocking: redis-py's blocking client, one call after the other (the
  milter would also need a thread hop for it, not counted here);
- own over TLS: the milter's client as a fleet's MTA uses it, to the same Redis's
  TLS port on loopback (a certificate of the run's own), logged in as an ACL
  user with a password; its ratio is to the own client on the socket.
The asyncio clients run once one call after another and once with --in-flight
calls at a time, as the milter's loop has them under load. It prints the
client's CPU a call (this process) and Redis's (its process), medians over the
rounds, and each client's ratio to the milter's own.
"""

import argparse
import asyncio
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent / "services" / "from_check"), str(HERE.parent / "collections")]
import redis  # noqa: E402
import redis.asyncio  # noqa: E402
from ansible_collections.mailops.submission.plugins.module_utils.login_limits import (  # noqa: E402
    limit_table,
    limits_of,
)
from from_check.limits import SCRIPT, CounterStore, StoreAddress, key  # noqa: E402

DEFAULTS = {
    "messages_per_hour": 10**6,
    "messages_per_day": 10**7,
    "recipients_per_hour": 10**6,
    "recipients_per_day": 10**7,
}
LIMITS = limits_of(limit_table(DEFAULTS), "load@runbox.com")
LOGINS = [f"load{n:03d}@runbox.com" for n in range(100)]
ARGS = [3] + [each for name, value, counts, seconds in LIMITS for each in (name, value, seconds, counts)]


def redis_cpu(pid):
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measured(pid, calls, run):
    """(client CPU s a call, Redis CPU s a call) of run(calls)."""
    redis_before, before = redis_cpu(pid), time.process_time()
    run(calls)
    return (time.process_time() - before) / calls, (redis_cpu(pid) - redis_before) / calls


def own(socket, in_flight):
    def run(calls):
        async def main():
            store = CounterStore(socket, timeout=5)
            for start in range(0, calls, in_flight):
                batch = range(start, min(start + in_flight, calls))
                await asyncio.gather(*(store.charge(LOGINS[n % 100], 3, LIMITS) for n in batch))
            store.close()

        asyncio.run(main())

    return run


def redis_py_asyncio(socket, in_flight):
    def run(calls):
        async def main():
            client = redis.asyncio.Redis(unix_socket_path=socket)
            script = client.register_script(SCRIPT)
            for start in range(0, calls, in_flight):
                batch = range(start, min(start + in_flight, calls))
                await asyncio.gather(*(script(keys=[key(LOGINS[n % 100])], args=ARGS) for n in batch))
            await client.close()

        asyncio.run(main())

    return run


def redis_py_blocking(socket):
    def run(calls):
        client = redis.Redis(unix_socket_path=socket)
        script = client.register_script(SCRIPT)
        for n in range(calls):
            script(keys=[key(LOGINS[n % 100])], args=ARGS)
        client.close()

    return run


def tls_files(directory):
    """A self-signed certificate for localhost, made for the run; the TLS arguments for redis-server."""
    crt, private = f"{directory}/tls.crt", f"{directory}/tls.key"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"),
            *("-keyout", private, "-out", crt, "-days", "1", "-subj", "/CN=localhost"),
            *("-addext", "subjectAltName=DNS:localhost"),
        ],
        check=True,
        capture_output=True,
    )
    return crt, ["--tls-cert-file", crt, "--tls-key-file", private, "--tls-ca-cert-file", crt]


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--in-flight", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    server = shutil.which("redis-server") or "/usr/bin/redis-server"
    with tempfile.TemporaryDirectory() as directory:
        socket, port, password = f"{directory}/redis.sock", 16380 + os.getpid() % 1000, os.urandom(12).hex()
        ca, tls_arguments = tls_files(directory)
        user = ["--user", "bench", "on", f">{password}", "~limits:*", "+@all"]
        tls = ["--tls-port", str(port), "--bind", "127.0.0.1", "--tls-auth-clients", "no", *tls_arguments, *user]
        process = subprocess.Popen(
            [server, "--port", "0", "--unixsocket", socket, "--save", "", "--appendonly", "no", *tls],
            cwd=directory,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            for line in process.stdout:
                if "ready to accept connections" in line.lower():
                    break
            clients = {
                "own, one at a time": own(socket, 1),
                f"own, {args.in_flight} in flight": own(socket, args.in_flight),
                "redis-py asyncio, one at a time": redis_py_asyncio(socket, 1),
                f"redis-py asyncio, {args.in_flight} in flight": redis_py_asyncio(socket, args.in_flight),
                "redis-py blocking, one at a time": redis_py_blocking(socket),
            }
            fleet = StoreAddress(host="localhost", port=port, ca_file=ca, user="bench", password=password)
            clients["own over TLS, one at a time"] = own(fleet, 1)
            clients[f"own over TLS, {args.in_flight} in flight"] = own(fleet, args.in_flight)
            results = {name: [] for name in clients}
            for _ in range(args.rounds):
                for name, run in clients.items():  # rotated in each round, side by side
                    results[name].append(measured(process.pid, args.calls, run))
        finally:
            process.kill()
            process.wait()
    print(f"{args.calls} calls a round, {args.rounds} rounds, medians; the four default limits, 3 recipients a message")
    print("| client | client CPU us a call | Redis CPU us a call | client CPU to own's (same concurrency) |")
    print("|---|---|---|---|")
    medians = {
        name: [statistics.median(each[i] for each in runs) * 1e6 for i in (0, 1)] for name, runs in results.items()
    }
    for name, (client, server) in medians.items():
        base = medians["own, one at a time" if "one at a time" in name else f"own, {args.in_flight} in flight"][0]
        print(f"| {name} | {client:.1f} | {server:.1f} | {client / base:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
