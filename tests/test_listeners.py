"""Every service name answers on its address and ports with the TLS it promises."""

import pytest
from host_probe import session


@pytest.mark.live
def test_every_endpoint_listens_on_its_address(host, deployment):
    missing = [
        f"{e.address}:{e.port} ({e.label})"
        for e in deployment.endpoints
        if not host.socket(f"tcp://{e.address}:{e.port}").is_listening
    ]
    assert not missing, "not listening: " + ", ".join(missing)


@pytest.mark.live
@pytest.mark.acme
def test_starttls_presents_a_certificate_that_verifies_for_the_name(probe, deployment):
    results = probe.run([session(e) for e in deployment.endpoints])
    for endpoint, result in zip(deployment.endpoints, results, strict=True):
        assert "tls_error" not in result, f"{endpoint.label}: {result['tls_error']}"
        assert result["starttls"][0] == 220, f"{endpoint.label}: {result}"
        assert endpoint.hostname in result["tls"]["names"], f"{endpoint.label}: {result['tls']}"
        assert result["tls"]["version"] in ("TLSv1.2", "TLSv1.3"), f"{endpoint.label}: {result['tls']}"


@pytest.mark.live
@pytest.mark.greeting
def test_a_never_seen_client_is_greeted_at_once(probe, deployment):
    """Mail clients change address all day: a new one must not wait for its greeting.
    Where a listener has pregreet: true, a new address does wait (the control)."""
    cases = [session(e, starttls=False, source=probe.unseen_source(e)) for e in deployment.endpoints]
    for endpoint, case, result in zip(deployment.endpoints, cases, probe.run(cases), strict=True):
        assert result.get("banner", [None])[0] == 220, f"{endpoint.label}: {result}"
        seconds = result["banner_seconds"]
        if not endpoint.pregreet:
            assert seconds < 1.0, f"{endpoint.label}: a new client waited {seconds} s for the greeting"
        elif case.get("source"):
            # Only from an address postscreen cannot have seen before.
            assert seconds >= deployment.greet_wait * 0.9, f"{endpoint.label}: pregreet on, greeted after {seconds} s"


@pytest.mark.live
def test_greeting_names_the_service(probe, deployment):
    results = probe.run([session(e, starttls=False) for e in deployment.endpoints])
    for endpoint, result in zip(deployment.endpoints, results, strict=True):
        assert result["banner"][0] == 220, f"{endpoint.label}: {result}"
        assert result["banner"][1].startswith(endpoint.hostname + " "), f"{endpoint.label}: {result['banner']}"


def handshake(endpoint, **fields):
    """A probe case that makes the endpoint's TLS handshake: STARTTLS, or TLS from the first byte."""
    if endpoint.tls == "implicit":
        return session(endpoint, starttls=False, implicit_tls=True, **fields)
    return session(endpoint, **fields)


@pytest.mark.live
@pytest.mark.acme
def test_protocols_older_than_tls_1_2_are_refused(probe, deployment):
    endpoints = deployment.endpoints + deployment.implicit_endpoints
    results = probe.run([handshake(e, tls_max="TLSv1_1") for e in endpoints])
    for endpoint, result in zip(endpoints, results, strict=True):
        assert "tls_error" in result, f"{endpoint.label} accepted TLS <= 1.1: {result.get('tls')}"


@pytest.mark.live
def test_auth_is_advertised_only_after_starttls(probe, deployment):
    results = probe.run([session(e) for e in deployment.endpoints])
    for endpoint, result in zip(deployment.endpoints, results, strict=True):
        assert "auth" not in result["features"], f"{endpoint.label} offers AUTH in clear: {result['features']}"
        assert "starttls" in result["features"], f"{endpoint.label}: {result['features']}"
        assert "auth" in result["features_tls"], f"{endpoint.label} offers no AUTH after STARTTLS"


@pytest.mark.live
def test_tls_only_service_refuses_mail_before_starttls(probe, deployment):
    required = [e for e in deployment.endpoints if e.tls == "required"]
    assert required, "no listener with tls: required in the inventory"
    account = deployment.accounts[0]
    results = probe.run(
        [session(e, starttls=False, mail_from=account.address, rcpt_to=[deployment.recipient]) for e in required]
    )
    for endpoint, result in zip(required, results, strict=True):
        assert result["mail"][0] == 530, f"{endpoint.label}: {result}"
        assert "STARTTLS" in result["mail"][1], f"{endpoint.label}: {result['mail']}"


@pytest.mark.live
@pytest.mark.acme
def test_tls_1_2_offers_only_forward_secret_aead_suites(probe, deployment):
    weak = "AES128-SHA:AES256-GCM-SHA384:ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA:DHE-RSA-AES128-SHA"
    strong = "ECDHE+AESGCM:ECDHE+CHACHA20"
    endpoints = deployment.endpoints + deployment.implicit_endpoints
    cases = [handshake(e, tls_max="TLSv1_2", ciphers=weak) for e in endpoints]
    cases += [handshake(e, tls_max="TLSv1_2", ciphers=strong) for e in endpoints]
    results = probe.run(cases)
    count = len(endpoints)
    for endpoint, result in zip(endpoints, results[:count], strict=True):
        assert "tls_error" in result, (
            f"{endpoint.label} accepted a suite without forward secrecy or AEAD: {result.get('tls')}"
        )
    for endpoint, result in zip(endpoints, results[count:], strict=True):
        assert "tls_error" not in result, f"{endpoint.label}: {result.get('tls_error')}"
        assert result["tls"]["version"] == "TLSv1.2", f"{endpoint.label}: {result['tls']}"
        assert "GCM" in result["tls"]["cipher"] or "CHACHA20" in result["tls"]["cipher"], result["tls"]


@pytest.mark.acme
def test_implicit_tls_ports_verify_and_take_authenticated_mail(probe, deployment):
    if not deployment.implicit_endpoints:
        pytest.skip("the inventory enables no implicit TLS port (implicit_tls_ports)")
    account = deployment.accounts[0]
    cases = [
        session(
            e,
            starttls=False,
            implicit_tls=True,
            login=account.login,
            password=account.password,
            mail_from=account.address,
            rcpt_to=[deployment.recipient],
            data=f"From: <{account.address}>\r\nSubject: implicit TLS\r\n\r\nsent on port {e.port}\r\n",
        )
        for e in deployment.implicit_endpoints
    ]
    for endpoint, result in zip(deployment.implicit_endpoints, probe.run(cases), strict=True):
        assert "tls_error" not in result, f"{endpoint.label}: {result['tls_error']}"
        assert endpoint.hostname in result["tls"]["names"], f"{endpoint.label}: {result['tls']}"
        assert result["tls"]["version"] in ("TLSv1.2", "TLSv1.3"), f"{endpoint.label}: {result['tls']}"
        assert "starttls" not in result["features"], f"{endpoint.label} offers STARTTLS inside TLS"
        assert result["auth"][0] == 235, f"{endpoint.label}: {result}"
        assert result["data"][0] == 250, f"{endpoint.label}: {result}"


@pytest.mark.live
@pytest.mark.acme
def test_implicit_tls_ports_say_nothing_in_clear(probe, deployment):
    if not deployment.implicit_endpoints:
        pytest.skip("the inventory enables no implicit TLS port (implicit_tls_ports)")
    results = probe.run([session(e, starttls=False, timeout=5) for e in deployment.implicit_endpoints])
    for endpoint, result in zip(deployment.implicit_endpoints, results, strict=True):
        assert "banner" not in result, f"{endpoint.label} greeted a client in clear: {result['banner']}"
