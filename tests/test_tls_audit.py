"""testssl.sh audits each listener and TLS mode, as an outside auditor would.

The first port of each listener and TLS mode (STARTTLS or TLS-only, and
implicit TLS where the listener has it) is scanned with the host's testssl
(Debian's testssl.sh package) by its name (so by SNI), STARTTLS where the port
speaks it: protocols, cipher categories (NULL, anonymous, export, LOW, 3DES,
obsolete CBC), server defaults (the certificate chains), the server's
preference, forward secrecy and vulnerabilities. A listener's other ports are
smtpd services written from the same options (master.cf's listener macro):
test_listeners checks every port of every name by handshake (protocols below
TLS 1.2 refused, which TLS 1.2 suites are refused and which chosen, the chain
verifying for the name), and test_certificates every name's chain of every key
type. Scanning those ports too took a third of the audit's time (four lighter
scans of seven a host in the acme scenario). A finding of severity MEDIUM or
higher fails the test, as does a
scanner warning (a check that could not run), unless the inventory accepts it
in submission_verify_tls_accepted_findings with its reason; protocols below
TLS 1.2 and a chain that does not verify for the name fail it in any case.

testssl's overall rating is off: it caps every STARTTLS service at grade T
whatever its configuration, since STARTTLS itself can be stripped by an active
attacker (RFC 8314), which no server setting changes.
"""

import json
import shlex

import pytest

pytestmark = [pytest.mark.tls_audit, pytest.mark.live]

FAILING = {"MEDIUM", "HIGH", "CRITICAL", "WARN"}
# Warnings about the scanner's own OpenSSL, not about the server: Debian's has
# no GOST engine, and GOST suites are nothing Postfix offers.
SCANNER_NOTES = {"engine_problem"}
OLD_PROTOCOLS = ("SSLv2", "SSLv3", "TLS1", "TLS1_1")
# testssl runs a few thousand handshakes an endpoint; more at once than this
# starve each other on a small host and turn into connect timeouts. Molecule
# audits two hosts side by side on two cores: three each (six in all) gave
# "sessionresumption_ticket ... connect problem" warnings in one CI run of three,
# two each still once on one endpoint of fourteen (when every port was scanned).
CONCURRENCY = 2
# A check that could not connect says nothing about the server; its endpoint is
# scanned again, alone, once the others are done. A warning the second scan
# repeats fails the test.
CONNECT_PROBLEM = "connect problem"


def scan_command(endpoint, out_dir, rating_option):
    args = ["testssl", "--quiet", "--warnings", "off", "--color", "0", *rating_option]
    # Cipher categories (--std), not every suite per protocol: the categories carry
    # the severities, and test_listeners checks by handshake which TLS 1.2 suites
    # are refused and which are chosen. --cipher-per-proto was most of the scan.
    args += ["--protocols", "--std", "--server-defaults"]
    # 45 s of an endpoint's scan against 18 s without (measured on Debian 13).
    args += ["--server-preference", "--fs", "--vulnerable"]
    # The host's own store: it holds the CA of a local or private deployment.
    args += ["--add-ca", "/etc/ssl/certs/ca-certificates.crt", "--ip", endpoint.address]
    args += ["--jsonfile", f"{out_dir}/{endpoint.hostname}-{endpoint.port}.json"]
    if endpoint.tls != "implicit":
        args += ["--starttls", "smtp"]
    args.append(f"{endpoint.hostname}:{endpoint.port}")
    return shlex.join(args)


def flatten(report):
    """testssl's JSON: a list of findings, or sections of them under scanResult."""
    if isinstance(report, list):
        return report
    findings = []
    for scan in report.get("scanResult", []):
        for value in scan.values():
            if isinstance(value, list):
                findings.extend(value)
    return findings


def accepted(finding, rules):
    base_id = finding["id"].split(" ")[0]
    return any(base_id == rule["id"] and finding["finding"].startswith(rule["finding"]) for rule in rules)


@pytest.fixture(scope="module")
def audit(host, deployment):
    """The findings of the first endpoint of each listener and TLS mode, from one testssl run each."""
    if not host.exists("testssl"):
        pytest.fail("testssl is not installed on the host under test (Debian package testssl.sh)")
    endpoints = deployment.first_endpoint_of_each_listener(implicit=True)
    # testssl 3.0 (Debian 12) has no rating to turn off.
    rating_option = ["--disable-rating"] if "--disable-rating" in host.run("testssl --help").stdout else []
    out_dir = host.check_output("mktemp -d /tmp/testssl.XXXXXX")
    try:
        run_scans(host, [scan_command(e, out_dir, rating_option) for e in endpoints], CONCURRENCY)
        reports = read_reports(host, endpoints, out_dir)
        again = [e for e, findings in reports.items() if any(CONNECT_PROBLEM in f["finding"] for f in findings)]
        if again:
            run_scans(host, [scan_command(e, out_dir, rating_option) for e in again], 1)
            reports.update(read_reports(host, again, out_dir))
        return reports
    finally:
        host.run("rm -rf %s", out_dir)


def run_scans(host, commands, concurrency):
    """Run the testssl commands, concurrency at a time.

    xargs keeps them running; testssl's own exit code counts findings, so the
    JSON files are what is judged.
    """
    script = "printf '%s\\0' " + " ".join(shlex.quote(c) for c in commands)
    script += f" | xargs -0 -P {concurrency} -I CMD sh -c 'CMD >/dev/null 2>&1 || true'"
    host.run(script)


def read_reports(host, endpoints, out_dir):
    reports = {}
    for endpoint in endpoints:
        path = f"{out_dir}/{endpoint.hostname}-{endpoint.port}.json"
        assert host.file(path).exists, f"{endpoint.label}: testssl wrote no report"
        reports[endpoint] = flatten(json.loads(host.file(path).content_string))
        # testssl will not write over a report, and a rescan writes this one again.
        host.run("rm -f %s", path)
    return reports


def test_each_listener_and_mode_had_a_full_scan(audit, host):
    """Guards the choice above: the first port of every listener and TLS mode the
    inventory lists was scanned, vulnerabilities and forward secrecy included."""
    for endpoint, findings in audit.items():
        ids = {f["id"] for f in findings}
        # Forward secrecy is "PFS" in testssl 3.0 (Debian 12), "FS" in 3.2.
        fully_scanned = {"heartbleed", "ROBOT"} <= ids and ids & {"FS", "PFS"}
        assert fully_scanned, f"{endpoint.label}: no vulnerability or forward secrecy findings: {sorted(ids)}"
    listeners = host.ansible.get_variables()["submission_common_listeners"]
    firsts = {(listener["name"], int(listener["ports"][0])) for listener in listeners}
    firsts |= {(lst["name"], int(lst["implicit_tls_ports"][0])) for lst in listeners if lst.get("implicit_tls_ports")}
    assert {(e.listener, e.port) for e in audit} == firsts


def test_no_finding_of_medium_severity_or_higher(audit, host):
    rules = host.ansible.get_variables().get("submission_verify_tls_accepted_findings", [])
    problems = [
        f"{endpoint.label}: {f['id']} {f['severity']}: {f['finding']}"
        for endpoint, findings in audit.items()
        for f in findings
        if f["severity"] in FAILING and f["id"] not in SCANNER_NOTES and not accepted(f, rules)
    ]
    assert not problems, "testssl findings:\n" + "\n".join(problems)


def test_only_tls_1_2_and_1_3_are_offered(audit):
    for endpoint, findings in audit.items():
        protocols = {f["id"]: f["finding"] for f in findings if f["id"] in (*OLD_PROTOCOLS, "TLS1_2", "TLS1_3")}
        assert len(protocols) == 6, f"{endpoint.label}: testssl reported no protocol list: {protocols}"
        for old in OLD_PROTOCOLS:
            assert protocols[old] == "not offered", f"{endpoint.label}: {old} {protocols[old]}"
        assert protocols["TLS1_3"].startswith("offered"), f"{endpoint.label}: TLS 1.3 {protocols['TLS1_3']}"


def test_every_chain_verifies_for_the_name(audit):
    for endpoint, findings in audit.items():
        chains = [f for f in findings if f["id"].startswith("cert_chain_of_trust")]
        names = [f for f in findings if f["id"].startswith("cert_trust")]
        assert chains, f"{endpoint.label}: testssl reported no certificate"
        for finding in chains:
            assert finding["finding"].startswith("passed"), f"{endpoint.label}: {finding}"
        for finding in names:
            assert finding["severity"] == "OK", f"{endpoint.label}: {finding}"
