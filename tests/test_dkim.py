"""DKIM: what leaves the service is signed twice (RSA-SHA256 and Ed25519-SHA256),
with d= the From header's domain where the provider holds its keys, else the
provider's domain; and a message that cannot be signed is deferred.

The signatures are checked by dkimpy (the verifier Debian ships as
python3-dkim), in the test process, on the message as the sink stored it; the
public keys are those the host publishes (its manifest, the records the
dkim_keys module prints).
"""

import base64
import json
import time
import uuid

import dkim
from host_probe import authenticated, message, queue_id, session

MANIFEST = "/etc/dkim/keys.json"


def published_keys(host):
    """The DNS a verifier would read: each key's record name -> its TXT text."""
    manifest = json.loads(host.file(MANIFEST).content_string)
    records = {}
    for key in manifest["keys"]:
        kind = "rsa" if key["algorithm"] == "rsa-sha256" else "ed25519"
        name = f"{key['selector']}._domainkey.{key['domain']}."
        records[name.encode()] = f"v=DKIM1; k={kind}; p={key['public']}".encode()
    return lambda name, timeout=5: records.get(name)


def stored(host, sink, token):
    """The raw message holding token in the sink (CRLF line ends), once it arrives within a minute."""
    found = host.run(
        "for i in $(seq 120); do f=$(grep -rl %s %s/new 2>/dev/null | head -n1); "
        '[ -n "$f" ] && cat "$f" && exit 0; sleep 0.5; done; exit 1',
        token,
        sink,
    )
    assert found.rc == 0, f"no message with {token} reached the sink"
    return found.stdout.encode().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def signatures(raw, dns):
    """[(d, s, passes)] for each DKIM-Signature of raw, top first."""
    checker = dkim.DKIM(raw)
    results = []
    for index in range(raw.count(b"\r\nDKIM-Signature:") + raw.startswith(b"DKIM-Signature:")):
        try:
            ok = checker.verify(idx=index, dnsfunc=dns)
        except dkim.DKIMException:
            ok = False
        fields = checker.signature_fields or {}
        results.append((fields.get(b"d", b"").decode(), fields.get(b"s", b"").decode(), ok))
    return results


def test_submissions_leave_with_two_signatures_of_the_right_domain(host, probe, deployment, sink):
    dns = published_keys(host)
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
        found = signatures(raw, dns)
        assert [(d, ok) for d, _, ok in found] == [(domain, True), (domain, True)], f"{name}: {found}"
        assert sorted(s[:-1] for _, s, _ in found) == ["ed", "rsa"], f"{name}: {found}"
        # The control: a changed body or From fails both signatures.
        body = raw.replace(f"Token {token}".encode(), b"Token changed")
        assert [ok for *_, ok in signatures(body, dns)] == [False, False], f"{name}: a changed body verified"
        author = raw.replace(f"From: <{sender}>".encode(), f"From: <x{sender}>".encode())
        assert [ok for *_, ok in signatures(author, dns)] == [False, False], f"{name}: a changed From verified"


def test_local_mail_and_postfix_notices_leave_signed(host, deployment, sink):
    """The validation service's mail (sendmail, the milter's local socket) and
    the bounce Postfix writes when the From check refuses a local message."""
    dns = published_keys(host)
    variables = host.ansible.get_variables()
    no_reply = variables.get("submission_common_no_reply", f"no-reply@{deployment.domain}")
    sendmail = "printf %%s %s | runuser -u sender-validation -- /usr/sbin/sendmail -i -f %s -- %s"
    own, refused = uuid.uuid4().hex, uuid.uuid4().hex
    text = "From: {author}\nTo: {to}\nSubject: signed {token}\n\nA test {token}.\n"
    mail = text.format(author=f"Runbox <{no_reply}>", to=deployment.recipient, token=own)
    assert host.run(sendmail, mail, no_reply, deployment.recipient).rc == 0
    found = signatures(stored(host, sink, own), dns)
    assert [(d, ok) for d, _, ok in found] == [(deployment.domain, True)] * 2, found
    # A From the service may not show: refused, and Postfix bounces it to the service's address.
    mail = text.format(author=deployment.accounts[0].address, to=deployment.recipient, token=refused)
    assert host.run(sendmail, mail, no_reply, deployment.recipient).rc == 0
    bounce = stored(host, sink, refused)
    assert b"MAILER-DAEMON" in bounce.split(b"\r\n\r\n")[0], "the message holding the token is not the bounce"
    found = signatures(bounce, dns)
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
        # The public key in the manifest is the one the file holds.
        derived = host.run(
            "openssl pkey -in %s -pubout -outform DER | base64 -w0", f"/etc/dkim/{key['file']}"
        ).stdout.strip()
        if key["algorithm"] == "rsa-sha256":
            assert derived == key["public"]
        else:  # the raw 32 octets end the DER form
            assert base64.b64decode(derived)[-32:] == base64.b64decode(key["public"])


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
