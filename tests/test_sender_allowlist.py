"""The sender allowlist: each login may send only from addresses that are its own.

The expected answer for every (login, sender) pair is worked out from the
inventory's accounts (address, aliases, domains, external_senders), the way
Postfix reads the tables: the full address, then without its +tag, then
@domain; the first key that exists decides. Allowed: 250 at RCPT. Refused:
553 5.7.1.
"""

import pytest
from host_probe import first_answer_to_rcpt, sender_session, session
from sender_expectations import allowed, owners

# Run on a single host and on every MTA of a fleet (molecule scenario fleet).
pytestmark = pytest.mark.fleet


def candidate_senders(accounts):
    """Every address the accounts own, in the forms clients send, and some they do not own."""
    senders = []
    for account in accounts:
        local, domain = account["address"].split("@")
        senders += [account["address"], account["address"].upper(), f"{local}+tag@{domain}"]
        for alias in account.get("aliases", []):
            alias_local, alias_domain = alias.split("@")
            senders += [alias, f"{alias_local.title()}+News@{alias_domain.upper()}"]
        for domain_owned in account.get("domains", []):
            senders += [f"anyone@{domain_owned}", f"Someone.Else+x@{domain_owned.upper()}"]
        senders += list(account.get("external_senders", []))
    senders += ["stranger@gmail.example", "not-validated@example.org", "nobody-here@runbox.com"]
    return sorted(set(senders))


def test_every_login_sends_only_as_itself(probe, deployment, accounts):
    keys = owners(accounts)
    senders = candidate_senders(accounts)
    cases, expected = [], []
    for endpoint in deployment.first_endpoint_of_each_listener():
        for account in deployment.accounts:
            for sender in senders:
                cases.append(sender_session(endpoint, account, sender, deployment.recipient))
                expected.append((endpoint.label, account, sender, allowed(keys, account.address, sender)))
    assert any(ok for *_, ok in expected) and not all(ok for *_, ok in expected), "the matrix must hold both outcomes"
    failures = []
    for (label, account, sender, ok), result in zip(expected, probe.run(cases), strict=True):
        if result.get("auth", [0])[0] != 235:
            failures.append(f"{label} {account.login}: login failed: {result}")
            continue
        rcpt = first_answer_to_rcpt(result)
        if ok and rcpt[0] != 250:
            failures.append(f"{label} {account.login} as {sender}: refused but is theirs: {rcpt}")
        if not ok and (rcpt[0] != 553 or "5.7.1" not in rcpt[1]):
            failures.append(f"{label} {account.login} as {sender}: expected 553 5.7.1, got {rcpt}")
    assert not failures, f"{len(failures)} of {len(cases)} wrong:\n" + "\n".join(failures)


def test_the_null_sender_is_refused_to_logged_in_clients(probe, deployment):
    account = deployment.accounts[0]
    endpoints = deployment.first_endpoint_of_each_listener()
    results = probe.run(
        [
            session(e, login=account.login, password=account.password, mail_from="", rcpt_to=[deployment.recipient])
            for e in endpoints
        ]
    )
    for endpoint, result in zip(endpoints, results, strict=True):
        rcpt = (result.get("rcpt") or [[0, str(result)]])[0]
        assert rcpt[0] == 553 and "5.7.1" in rcpt[1], f"{endpoint.label}: {result}"
