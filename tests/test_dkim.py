"""DKIM: what leaves the service is signed twice (RSA-SHA256 and Ed25519-SHA256),
with d= the From header's domain where the provider holds its keys, else the
provider's domain; a message that cannot be signed is deferred; and the DNS
records the deployment needs are published.

The signatures are checked on the instance by dkimpy (Debian's python3-dkim,
not the project's signing code), which looks the keys up in DNS as a receiver
does: the instance resolves through the test's DNS (molecule/default/local_dns.yml),
which serves the zones playbooks/dns-records.yml prints.
"""

import base64
import datetime
import json
import time
import uuid

from host_probe import authenticated, message, queue_id, session
from testinfra.modules.ansible import AnsibleException

MANIFEST = "/etc/dkim/keys.json"
# dkimpy on the instance: [(d, s, passes)] for each signature of the message given in base64.
VERIFY = """
import base64, json, sys, dkim
raw = base64.b64decode(sys.argv[1]).replace(b"\\r\\n", b"\\n").replace(b"\\n", b"\\r\\n")
checker, found = dkim.DKIM(raw), []
for index in range(raw.count(b"DKIM-Signature:")):
    try:
        ok = checker.verify(idx=index)
    except dkim.DKIMException:
        ok = False
    fields = checker.signature_fields or {}
    found.append((fields.get(b"d", b"").decode(), fields.get(b"s", b"").decode(), bool(ok)))
print(json.dumps(found))
"""


def stored(host, sink, token):
    """The raw message holding token in the sink, once it arrives within a minute."""
    found = host.run(
        "for i in $(seq 120); do f=$(grep -rl %s %s/new 2>/dev/null | head -n1); "
        '[ -n "$f" ] && cat "$f" && exit 0; sleep 0.5; done; exit 1',
        token,
        sink,
    )
    assert found.rc == 0, f"no message with {token} reached the sink"
    return found.stdout.encode()


def signatures(host, raw):
    """[(d, s, passes)] for each DKIM-Signature of raw, as dkimpy on the instance sees them."""
    out = host.run("python3 -c %s %s", VERIFY, base64.b64encode(raw).decode())
    assert out.rc == 0, out.stderr
    return [tuple(each) for each in json.loads(out.stdout)]


def test_submissions_leave_with_two_signatures_of_the_right_domain(host, probe, deployment, sink):
    endpoint = deployment.endpoints[0]
    alice = next(a for a in deployment.accounts if a.address.endswith(f"@{deployment.domain}"))
    bob = next(a for a in deployment.accounts if not a.address.endswith(f"@{deployment.domain}"))
    external = next(
        sender
        for account in host.ansible.get_variables()["submission_accounts"]
        if account["address"] == alice.address
        for sender in account.get("external_senders", [])
    )
    cases = {
        # own address: the provider's domain; a hosted domain: its own keys; a validated address
        # elsewhere: the provider's domain (signed, not aligned).
        "own": (alice, alice.address, deployment.domain),
        "hosted": (bob, bob.address, bob.address.split("@")[1]),
        "validated": (alice, external, deployment.domain),
    }
    for name, (account, sender, domain) in cases.items():
        token = uuid.uuid4().hex
        data = message(sender, deployment.recipient, token)
        case = session(
            endpoint,
            login=account.login,
            password=account.password,
            mail_from=sender,
            rcpt_to=[deployment.recipient],
            data=data,
        )
        result = probe.one(case)
        assert queue_id(result), f"{name}: not accepted: {result}"
        raw = stored(host, sink, token)
        found = signatures(host, raw)
        # dkimpy's verdicts, in the log of the run (molecule's verify shows what passed tests print).
        print(f"{name} ({sender}): dkimpy on the instance: {found}")
        assert [(d, ok) for d, _, ok in found] == [(domain, True), (domain, True)], f"{name}: {found}"
        assert sorted(s[:-1] for _, s, _ in found) == ["ed", "rsa"], f"{name}: {found}"
        # The control: a changed body or From fails both signatures.
        body = raw.replace(f"Token {token}".encode(), b"Token changed")
        assert [ok for *_, ok in signatures(host, body)] == [False, False], f"{name}: a changed body verified"
        author = raw.replace(f"From: <{sender}>".encode(), f"From: <x{sender}>".encode())
        assert [ok for *_, ok in signatures(host, author)] == [False, False], f"{name}: a changed From verified"


def test_local_mail_and_postfix_notices_leave_signed(host, deployment, sink):
    """The validation service's mail (sendmail, the milter's local socket) and
    the bounce Postfix writes when the From check refuses a local message."""
    variables = host.ansible.get_variables()
    no_reply = variables.get("submission_common_no_reply", f"no-reply@{deployment.domain}")
    sendmail = "printf %%s %s | runuser -u sender-validation -- /usr/sbin/sendmail -i -f %s -- %s"
    own, refused = uuid.uuid4().hex, uuid.uuid4().hex
    text = "From: {author}\nTo: {to}\nSubject: signed {token}\n\nA test {token}.\n"
    mail = text.format(author=f"Runbox <{no_reply}>", to=deployment.recipient, token=own)
    assert host.run(sendmail, mail, no_reply, deployment.recipient).rc == 0
    found = signatures(host, stored(host, sink, own))
    print(f"the validation service's mail ({no_reply}): dkimpy on the instance: {found}")
    assert [(d, ok) for d, _, ok in found] == [(deployment.domain, True)] * 2, found
    # A From the service may not show: refused, and Postfix bounces it to the service's address.
    mail = text.format(author=deployment.accounts[0].address, to=deployment.recipient, token=refused)
    assert host.run(sendmail, mail, no_reply, deployment.recipient).rc == 0
    bounce = stored(host, sink, refused)
    assert b"MAILER-DAEMON" in bounce.split(b"\n\n")[0], "the message holding the token is not the bounce"
    found = signatures(host, bounce)
    print(f"Postfix's bounce: dkimpy on the instance: {found}")
    assert [ok for *_, ok in found] == [True, True] and found[0][0] == deployment.domain, found


def test_the_keys_are_for_root_and_the_milter_alone(host):
    directory = host.file("/etc/dkim")
    assert (directory.user, directory.group, directory.mode) == ("root", "from-check", 0o2750)
    manifest = json.loads(host.file(MANIFEST).content_string)
    assert {(key["algorithm"], key["state"]) for key in manifest["keys"]} == {
        ("rsa-sha256", "active"),
        ("ed25519-sha256", "active"),
    }
    for key in manifest["keys"]:
        pem = host.file(f"/etc/dkim/{key['file']}")
        assert (pem.user, pem.group, pem.mode) == ("root", "from-check", 0o640), key["file"]


def test_a_key_the_milter_cannot_read_defers_and_mail_flows_again_once_fixed(host, probe, deployment):
    manifest = json.loads(host.file(MANIFEST).content_string)
    key = next(k for k in manifest["keys"] if k["domain"] == deployment.domain and k["algorithm"] == "rsa-sha256")
    path = f"/etc/dkim/{key['file']}"
    alice = next(a for a in deployment.accounts if a.address.endswith(f"@{deployment.domain}"))
    endpoint = deployment.endpoints[0]

    def send():
        data = message(alice.address, deployment.recipient, uuid.uuid4().hex)
        return probe.one(authenticated(endpoint, alice, deployment.recipient, data=data))

    # The manifest touched: the milter reads the keys again, and cannot read this one.
    assert host.run("chmod 0600 %s && touch %s", path, MANIFEST).rc == 0
    try:
        result = send()
    finally:
        host.run("chmod 0640 %s", path)
    code, text = result["data"]
    assert code == 451 and "cannot be signed" in text, result
    log = host.run("journalctl --no-pager -o cat --since=-1min -u from-check | grep -F %s", key["file"])
    assert "cannot be read" in log.stdout, f"the milter's log does not name the key file: {log.stdout}"
    # The milter tries a broken key again each second: the next messages pass.
    deadline = time.monotonic() + 15
    while not queue_id(result) and time.monotonic() < deadline:
        result = send()
    assert queue_id(result), f"not accepted once the key was readable again: {result}"


def dns_check(host, deployment):
    """The dns_records module on the instance, checking what its DNS publishes; its result."""
    facts = host.ansible("setup", "gather_subset=network")["ansible_facts"]
    domains = sorted({a.address.split("@")[1] for a in deployment.accounts} - {deployment.domain})
    args = {
        "provider_domain": deployment.domain,
        "domains": domains,
        "mta_addresses": [facts["ansible_default_ipv4"]["address"]],
        "helo_names": [f"smtp.{deployment.domain}"],
        "dmarc_report_address": f"postmaster@{deployment.domain}",
    }
    try:
        return host.ansible("mailops.submission.dns_records", json.dumps(args), check=False, become=True)
    except AnsibleException as exc:  # the task failed: its result
        return {**exc.result, "failed": True}


def test_the_published_records_pass_the_check_and_a_missing_one_is_named(host, deployment):
    checked = dns_check(host, deployment)
    assert checked.get("problems") == [], checked
    print("the records the instance's DNS publishes:", *(f"{r['type']} {r['name']}" for r in checked["records"]))
    hosted = next(a.address.split("@")[1] for a in deployment.accounts if not a.address.endswith(deployment.domain))
    zone = f"/etc/unbound/{hosted}.zone"
    assert host.run("cp %s %s.kept && sed -i '/^_dmarc\\./d' %s && systemctl restart unbound", zone, zone, zone).rc == 0
    try:
        result = dns_check(host, deployment)
    finally:
        host.run("mv %s.kept %s && systemctl restart unbound", zone, zone)
    # The module failed (testinfra's result of a failed task keeps its message, not its "failed" flag).
    assert result.get("msg") == "1 records are not published as they must be", result
    assert [p.split(" (found")[0] for p in result["problems"]] == [
        f'missing: TXT _dmarc.{hosted} "v=DMARC1; p=none; rua=mailto:postmaster@{deployment.domain}; adkim=r; aspf=r"'
    ]


def publish(host, zones):
    """The zones (dns_records' output) written into the test DNS's zone files, as
    molecule/default/local_dns.yml writes them, and served."""
    for zone, lines in zones.items():
        head = [f"$ORIGIN {zone.rstrip('.')}.", "@\t3600\tIN\tSOA\tns.invalid. hostmaster.invalid. 2 3600 600 86400 60"]
        text = "\n".join([*head, "@\t3600\tIN\tNS\tns.invalid.", *lines, ""])
        written = host.run(
            "printf %%s %s | base64 -d > /etc/unbound/%s.zone", base64.b64encode(text.encode()).decode(), zone
        )
        assert written.rc == 0, written.stderr
    assert host.run("systemctl restart unbound").rc == 0


def test_after_a_rotation_the_new_selectors_sign_and_earlier_mail_still_verifies(host, probe, deployment, sink):
    """Half a year on (the module's today): a new key in each pair's other slot, pending until its
    record is published, then signing; the key it replaces stays published (retiring), so mail
    signed before the rotation still verifies. Last of this module: the instance keeps the new keys."""
    alice = next(a for a in deployment.accounts if a.address.endswith(f"@{deployment.domain}"))
    endpoint = deployment.endpoints[0]

    def signed_message():
        token = uuid.uuid4().hex
        data = message(alice.address, deployment.recipient, token)
        assert queue_id(probe.one(authenticated(endpoint, alice, deployment.recipient, data=data)))
        raw = stored(host, sink, token)
        return raw, signatures(host, raw)

    earlier, found = signed_message()
    old = {selector for _, selector, ok in found if ok}
    assert len(old) == 2, found
    later = (datetime.date.today() + datetime.timedelta(days=181)).isoformat()
    variables = host.ansible.get_variables()
    args = {
        "directory": "/etc/dkim",
        "group": "from-check",
        "provider_domain": deployment.domain,
        "domains": sorted({a.address.split("@")[1] for a in deployment.accounts} - {deployment.domain}),
        "rotation_days": variables.get("submission_dkim_rotation_days", 180),
        "today": later,
        "dns_timeout": 2,
    }
    made = host.ansible("mailops.submission.dkim_keys", json.dumps(args), check=False, become=True)
    assert len(made["created"]) == 2 * (1 + len(args["domains"])) and not made["activated"], made
    # Not published yet: nothing changes for the milter.
    assert {s for _, s, ok in signed_message()[1] if ok} == old
    publish(host, dns_check(host, deployment)["zones"])
    moved = host.ansible("mailops.submission.dkim_keys", json.dumps(args), check=False, become=True)
    assert len(moved["activated"]) == len(made["created"]) == len(moved["retiring"]), moved
    # The milter reads the manifest again when it changes; a message already signing keeps the old keys.
    deadline = time.monotonic() + 20
    raw, found = signed_message()
    while {s for _, s, _ in found} == old and time.monotonic() < deadline:
        raw, found = signed_message()
    print(f"after the rotation: dkimpy on the instance: {found}; before it: {signatures(host, earlier)}")
    assert [ok for *_, ok in found] == [True, True], found
    assert not {s for _, s, _ in found} & old, f"still the old selectors {old}: {found}"
    assert [ok for *_, ok in signatures(host, earlier)] == [True, True], "mail signed before no longer verifies"
    # The control: the new signatures fail for a changed body.
    changed = raw.replace(b"Token ", b"Token changed ")
    assert [ok for *_, ok in signatures(host, changed)] == [False, False], "a changed body verified"
