"""A real DNS server for the tests: Debian's unbound on a loopback port,
answering as a resolver from zone files of the test's (auth-zone,
for-upstream), so that CNAMEs from one zone into another are followed as
receivers' resolvers follow them. A zone "." (the root, empty) makes every
other name NXDOMAIN at once: nothing is asked outside the machine."""

import contextlib
import shutil
import socket
import subprocess
import time

UNBOUND = shutil.which("unbound") or shutil.which("unbound", path="/usr/sbin:/sbin")
SOA = "@\t3600\tIN\tSOA\tns.invalid. hostmaster.invalid. 1 3600 600 86400 60\n@\t3600\tIN\tNS\tns.invalid.\n"


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def write_zones(directory, zones):
    """Zone files {zone: lines} into directory; returns the auth-zone clauses."""
    clauses = []
    for zone, lines in zones.items():
        path = directory / f"{'root' if zone == '.' else zone}.zone"
        origin = zone if zone.endswith(".") else f"{zone}."
        path.write_text(f"$ORIGIN {origin}\n" + SOA + "".join(line + "\n" for line in lines))
        clauses.append(
            f'auth-zone:\n  name: "{zone}"\n  zonefile: "{path}"\n  for-downstream: no\n  for-upstream: yes\n'
            "  fallback-enabled: no\n"
        )
    return clauses


@contextlib.contextmanager
def serving(directory, zones):
    """unbound serving zones on 127.0.0.1; yields its port."""
    assert UNBOUND, "Debian's unbound is not installed (scripts/bootstrap.sh installs it)"
    port = free_port()
    config = directory / "unbound.conf"
    config.write_text(
        "server:\n"
        f'  interface: 127.0.0.1\n  port: {port}\n  do-daemonize: no\n  username: ""\n  chroot: ""\n'
        f'  directory: "{directory}"\n  pidfile: ""\n  use-syslog: no\n  do-ip6: no\n'
        '  module-config: "iterator"\n  access-control: 127.0.0.0/8 allow\n'
        "  # Nothing outside the zones: no root hints are asked.\n  do-not-query-localhost: no\n"
        + "".join(write_zones(directory, zones))
    )
    process = subprocess.Popen([UNBOUND, "-d", "-c", str(config)], stderr=subprocess.PIPE)
    try:
        wait_until_serving(port, process, next(iter(zones)))
        yield port
    finally:
        process.terminate()
        process.wait(5)


def wait_until_serving(port, process, zone):
    import dns.exception  # noqa: PLC0415
    import dns.message  # noqa: PLC0415
    import dns.query  # noqa: PLC0415

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"unbound exited: {process.stderr.read().decode(errors='replace')}")
        try:
            dns.query.udp(dns.message.make_query(zone, "SOA"), "127.0.0.1", port=port, timeout=0.2)
            return
        except (dns.exception.Timeout, OSError):
            continue
    raise RuntimeError("unbound did not answer within 10 s")
