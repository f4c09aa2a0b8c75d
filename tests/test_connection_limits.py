"""Per-address connection limits: one address cannot take a port's smtpd
processes, and another address still gets in."""

import json

from deployment import postfix_setting
from host_probe import Probe

# Opens LIMIT connections from FIRST and keeps them, then one more from FIRST
# and one from SECOND; prints the first reply line of the last two.
HOLD = r"""
import json, socket, sys
host, port, limit, first, second = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
def banner(source):
    s = socket.create_connection((host, port), 20, (source, 0))
    return s, s.makefile("rb").readline().decode().strip()
held = [banner(first) for _ in range(limit)]
assert all(line.startswith("220") for _, line in held), [line for _, line in held]
over = banner(first)[1]
other = banner(second)[1]
print(json.dumps({"over": over, "other": other}))
"""


def test_one_address_is_held_to_its_connection_count_and_another_gets_in(host, deployment):
    limit, expected = postfix_setting(
        host, "smtpd_client_connection_count_limit", "submission_mta_client_connection_count_limit", 20
    )
    assert limit == expected, f"smtpd_client_connection_count_limit is {limit}, the inventory says {expected}"
    assert 0 < limit <= 50, f"a limit of {limit} lets two addresses fill a port's 100 processes"
    endpoint = deployment.endpoints[0]
    first, second = Probe.unseen_source(endpoint), Probe.unseen_source(endpoint)
    assert first, "the test needs a loopback listener to choose client addresses"
    run = host.run(
        "python3 -c %s %s %s %s %s %s", HOLD, endpoint.hostname, str(endpoint.port), str(limit), first, second
    )
    assert run.rc == 0, run.stderr
    answers = json.loads(run.stdout)
    assert answers["over"].startswith("421") and "too many connections" in answers["over"], answers
    assert answers["other"].startswith("220"), f"a second address was kept out: {answers}"


def test_rate_limits_are_the_inventorys_and_ipv6_clients_count_by_prefix_where_postfix_can(host):
    variables = host.ansible.get_variables()
    for name, default in (
        ("client_connection_rate_limit", 300),
        ("client_new_tls_session_rate_limit", 300),
    ):
        value, expected = postfix_setting(host, f"smtpd_{name}", f"submission_mta_{name}", default)
        assert value == expected > 0, f"smtpd_{name} is {value}, the inventory says {expected}"
    version = tuple(int(part) for part in host.check_output("postconf -dh mail_version").split(".")[:2])
    prefix = host.run("postconf -h smtpd_client_ipv6_prefix_length")
    if version >= (3, 8):
        expected = int(variables.get("submission_mta_client_ipv6_prefix_length", 64))
        assert prefix.stdout.strip() == str(expected), f"Postfix {version}: prefix {prefix.stdout.strip()!r}"
    else:
        assert prefix.rc != 0 or "unknown" in prefix.stderr + prefix.stdout, "Postfix 3.7 has no such parameter"
