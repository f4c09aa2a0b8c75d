"""Relay: authenticated clients only, and what they send arrives intact."""

import uuid

import pytest
from host_probe import client_log_line, message, queue_id, session, wait_for_sink

# Run on a single host and on every MTA of a fleet (molecule scenario fleet).
pytestmark = pytest.mark.fleet


@pytest.mark.live
def test_unauthenticated_relay_is_refused_on_every_endpoint(probe, deployment):
    sender = deployment.accounts[0].address
    cases, labels = [], []
    for endpoint in deployment.endpoints:
        for starttls in (True, False) if endpoint.tls != "required" else (True,):
            cases.append(session(endpoint, starttls=starttls, mail_from=sender, rcpt_to=[deployment.recipient]))
            labels.append(f"{endpoint.label} {'after' if starttls else 'without'} STARTTLS")
    failures = []
    for label, result in zip(labels, probe.run(cases), strict=True):
        rcpt = (result.get("rcpt") or [[0, ""]])[0]
        if rcpt[0] != 554 or "5.7.1" not in rcpt[1] or "data" in result:
            failures.append(f"{label}: {result}")
    assert not failures, "relayed without AUTH:\n" + "\n".join(failures)


def test_authenticated_message_reaches_the_sink_with_its_envelope_sender(host, probe, deployment, sink):
    account = deployment.accounts[0]
    tokens = {e: uuid.uuid4().hex for e in deployment.endpoints}
    cases = [
        session(
            e,
            login=account.login,
            password=account.password,
            mail_from=account.address,
            rcpt_to=[deployment.recipient],
            data=message(account.address, deployment.recipient, tokens[e]),
        )
        for e in deployment.endpoints
    ]
    failures = []
    for endpoint, result in zip(deployment.endpoints, probe.run(cases), strict=True):
        if (result.get("data") or [0])[0] != 250:
            failures.append(f"{endpoint.label} did not accept: {result}")
            continue
        received = wait_for_sink(host, sink, tokens[endpoint])
        if received is None:
            failures.append(f"{endpoint.label}: accepted ({result['data'][1]}) but never reached the sink")
        elif received["X-MailFrom"] != account.address:
            failures.append(f"{endpoint.label}: envelope sender became {received['X-MailFrom']}")
        elif deployment.recipient not in received["X-RcptTo"]:
            failures.append(f"{endpoint.label}: recipients became {received['X-RcptTo']}")
    assert not failures, "\n".join(failures)


@pytest.mark.live
def test_postfix_logs_the_canonical_login_as_sasl_username(host, probe, deployment):
    endpoint = deployment.endpoints[0]
    failures = []
    for account in deployment.accounts:
        local, domain = account.address.split("@")
        login = f"{local}%{domain}".upper()
        result = probe.one(
            session(
                endpoint,
                login=login,
                password=account.password,
                mail_from=account.address,
                rcpt_to=[deployment.recipient],
                data=message(account.address, deployment.recipient, uuid.uuid4().hex),
            )
        )
        queued = queue_id(result)
        if not queued:
            failures.append(f"{login}: not accepted: {result}")
            continue
        log = client_log_line(host, queued)
        if f"sasl_username={account.address}" not in log.split():
            failures.append(f"{login}: logged as {log.strip()!r}, expected sasl_username={account.address}")
    assert not failures, "\n".join(failures)
