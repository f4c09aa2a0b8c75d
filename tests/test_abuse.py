"""What the service refuses under attack, from any client address, loopback included."""

import time
import uuid

import pytest
from host_probe import authenticated, drain_queue, session


def relay_tricks(hostname, address):
    """Recipient forms that have made MTAs relay for strangers."""
    return {
        "plain": "victim@example.net",
        "percent hack": f"victim%example.net@{hostname}",
        "source route": f"@{hostname}:victim@example.net",
        "bang path": f"example.net!victim@{hostname}",
        "quoted local part": f'"victim@example.net"@{hostname}',
        "unqualified": "victim",
        "IP literal": f"victim@[{address}]",
        "percent hack to an IP literal": f"victim%example.net@[{address}]",
    }


@pytest.mark.live
def test_no_relay_trick_works_without_auth(probe, deployment):
    sender = "stranger@example.org"
    cases, labels = [], []
    for endpoint in deployment.endpoints:
        for trick, rcpt in relay_tricks(endpoint.hostname, endpoint.address).items():
            cases.append(session(endpoint, mail_from=sender, rcpt_to=[rcpt], data="Subject: relay\r\n\r\nx\r\n"))
            labels.append(f"{endpoint.label} {trick} <{rcpt}>")
    failures = []
    for label, result in zip(labels, probe.run(cases), strict=True):
        codes = [code for code, _ in result.get("rcpt", [])]
        if "data" in result or not codes or any(code < 500 for code in codes):
            failures.append(f"{label}: {result.get('rcpt') or result}")
    assert not failures, "accepted without AUTH:\n" + "\n".join(failures)


def sink_files(host, maildir, token):
    """The sink's messages that hold the token, once the queue has drained."""
    assert drain_queue(host), "the queue did not drain in 120 s"
    return set(host.run("grep -rl %s %s/new %s/cur", token, maildir, maildir).stdout.split())


def test_smtp_smuggling_does_not_split_a_message(host, probe, deployment, sink):
    account = deployment.accounts[0]
    failures = []
    endpoint = deployment.endpoints[0]
    for ending in ("\n.\r\n", "\r\n.\n", "\n.\n", "\r.\r\n"):
        outer, smuggled = uuid.uuid4().hex, uuid.uuid4().hex
        raw = (
            f"From: <{account.address}>\r\nSubject: outer {outer}\r\n\r\nouter {outer}{ending}"
            f"MAIL FROM:<{account.address}>\r\nRCPT TO:<{deployment.recipient}>\r\nDATA\r\n"
            f"From: <{account.address}>\r\nSubject: smuggled {smuggled}\r\n\r\nsmuggled {smuggled}\r\n.\r\n"
        )
        result = probe.one(authenticated(endpoint, account, deployment.recipient, raw_data=raw))
        label = f"end of data {ending!r}"
        if len(result.get("data_replies", [])) > 1:
            failures.append(f"{label}: the server answered the content as commands: {result['data_replies']}")
        # Refused whole or taken whole: either way no message of its own holds the smuggled text.
        smuggled_files = sink_files(host, sink, smuggled)
        outer_files = sink_files(host, sink, outer)
        if smuggled_files - outer_files:
            failures.append(f"{label}: the smuggled message arrived on its own: {sorted(smuggled_files - outer_files)}")
        if len(outer_files) > 1:
            failures.append(f"{label}: the message arrived {len(outer_files)} times")
    assert not failures, "\n".join(failures)


def test_an_oversized_message_gets_552(host, probe, deployment):
    limit = int(host.ansible.get_variables().get("submission_mta_message_size_limit", 52428800))
    account = deployment.accounts[0]
    endpoint = deployment.endpoints[0]
    announced = probe.one(
        authenticated(endpoint, account, deployment.recipient, mail_params=f"SIZE={limit + 1}"),
    )
    assert announced["mail"][0] == 552, f"MAIL with SIZE={limit + 1}: {announced}"
    sent = probe.one(
        authenticated(
            endpoint,
            account,
            deployment.recipient,
            data=f"From: <{account.address}>\r\nSubject: too big\r\n\r\n",
            data_fill=limit + 1000,
            timeout=120,
        )
    )
    assert (sent.get("data") or [0])[0] == 552, f"{limit + 1000} bytes of DATA: {sent.get('data') or sent}"


@pytest.mark.greeting
def test_a_client_that_talks_before_the_greeting_is_refused(probe, deployment):
    """postscreen's greeting test, on the listeners that ask for it (pregreet: true)."""
    endpoints = [e for e in deployment.endpoints if e.pregreet]
    if not endpoints:
        pytest.skip("no listener has pregreet: true (the acme scenario has one)")
    cases = [session(e, pregreet=True, source=probe.unseen_source(e)) for e in endpoints]
    failures = []
    for endpoint, case, result in zip(endpoints, cases, probe.run(cases), strict=True):
        lines = result["received"].splitlines()
        if not any(line.startswith("521 ") for line in lines):
            failures.append(f"{endpoint.label} from {case.get('source') or 'the host'}: {lines}")
        if any(line.startswith("250") for line in lines):
            failures.append(f"{endpoint.label} answered the early EHLO: {lines}")
    assert not failures, "\n".join(failures)


@pytest.mark.greeting
def test_a_client_that_waits_for_the_greeting_is_served(probe, deployment):
    """The control of the test above: the same kind of fresh address, a polite client, on every port."""
    account = deployment.accounts[0]
    cases = [
        session(e, login=account.login, password=account.password, source=probe.unseen_source(e))
        for e in deployment.endpoints
    ]
    results = probe.run(cases)
    assert [r.get("auth", [None])[0] for r in results] == [235] * len(cases), results


@pytest.fixture(scope="module")
def auth_rate_limit(host):
    return int(host.ansible.get_variables().get("submission_mta_client_auth_rate_limit", 0))


@pytest.mark.greeting
def test_password_guessing_from_one_address_is_cut_off(host, probe, deployment, auth_rate_limit):
    """After as many AUTH attempts as the limit allows in a minute, that address gets no more.

    The limit counts per SMTP server: the guessed port alone, or every port of
    a pregreet listener, whose postscreen hands them all to one server."""
    if auth_rate_limit == 0:
        pytest.skip(
            "submission_mta_client_auth_rate_limit is 0 (off, the default, as it counts successful logins too; "
            "test_a_nat_full_of_users_logs_in_while_a_guesser_is_slowed covers guessing); the acme scenario sets it"
        )
    account = deployment.accounts[0]
    for endpoint in deployment.first_endpoint_of_each_listener():
        guesser = probe.unseen_source(endpoint)
        guesses = [
            session(endpoint, login=account.login, password=f"guess-{n}", source=guesser)
            for n in range(auth_rate_limit)
        ]
        # Side by side, so that Dovecot's delay after each failure does not add up.
        codes = [r.get("auth", [None])[0] for r in probe.run(guesses, workers=auth_rate_limit)]
        assert codes == [535] * auth_rate_limit, f"{endpoint.label} guesses from {guesser}: {codes}"
        # Dovecot slows every later login from that address (its auth penalty).
        penalties = host.run("doveadm penalty").stdout
        client = guesser or host.run("hostname -I").stdout.split()[0]
        assert any(line.split()[:1] == [client] for line in penalties.splitlines()), penalties
        # The right password, from the same address within the minute, on every
        # port the limit covers: it counts the address, not the password.
        ports = deployment.auth_rate_scope(endpoint)
        after = probe.run([session(e, login=account.login, password=account.password, source=guesser) for e in ports])
        for port, result in zip(ports, after, strict=True):
            assert result.get("auth", [None])[0] == 450, f"{port.label} from {guesser} after the guesses: {result}"
            assert "too many AUTH" in result["auth"][1], result
        # Another address is not affected (on loopback listeners, where the
        # probe has other addresses to come from).
        if guesser is not None:
            other = probe.one(
                session(endpoint, login=account.login, password=account.password, source=probe.unseen_source(endpoint))
            )
            assert other.get("auth", [None])[0] == 235, f"{endpoint.label} from another address: {other}"


def test_a_nat_full_of_users_logs_in_while_a_guesser_is_slowed(host, probe, deployment):
    """What counts against an address is failed logins, not logins: a hundred
    users behind one address log in within a minute, while a guesser from
    another address waits longer at each failure (Dovecot's auth penalty)."""
    account, endpoint = deployment.accounts[0], deployment.endpoints[0]
    nat = probe.unseen_source(endpoint)
    users = [session(endpoint, login=account.login, password=account.password, source=nat) for _ in range(100)]
    started = time.monotonic()
    codes = [r.get("auth", [None])[0] for r in probe.run(users, workers=8)]
    elapsed = time.monotonic() - started
    assert codes == [235] * 100, f"logins from one address refused: {sorted(set(codes), key=str)}"
    assert elapsed < 60, f"a hundred logins took {elapsed:.0f} s"

    guesser = probe.unseen_source(endpoint)
    waits = []
    for n in range(4):
        started = time.monotonic()
        result = probe.one(session(endpoint, login=account.login, password=f"guess-{n}", source=guesser))
        waits.append(round(time.monotonic() - started, 1))
        assert result.get("auth", [None])[0] in (535, 454), f"guess {n + 1}: {result}"
    # The first failure waits submission_sasl_failure_delay; every later one
    # longer, as the penalty for the address grows.
    assert waits[-1] >= waits[0] + 3 and waits[-1] >= 5, f"guesses were not slowed: {waits} s"
