"""Each service name presents its own certificate chains, chosen by SNI.

Every name has one chain per key type; the client's signature algorithms pick
the type. A client that sends no SNI, or a name the server has no certificate
for, gets the chains of the listener's own name. Every chain verifies for its
name against the host's trust store and has more days left than the renewal
threshold.
"""

import datetime
import re

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

pytestmark = [pytest.mark.acme, pytest.mark.live]

# Signature algorithms that only a certificate of that key type can answer.
SIGALGS = {
    "ecdsa": "ECDSA+SHA256:ECDSA+SHA384",
    "rsa": "rsa_pss_rsae_sha256:rsa_pss_rsae_sha384:RSA+SHA256",
}
KEY_CLASSES = {"ecdsa": ec.EllipticCurvePublicKey, "rsa": rsa.RSAPublicKey}
PEM = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


def handshake(host, endpoint, key_type, sni, verify_name):
    """The leaf certificate the endpoint serves, and OpenSSL's verification of it."""
    args = ["-connect", f"{endpoint.address}:{endpoint.port}", "-sigalgs", SIGALGS[key_type]]
    args += ["-verify_hostname", verify_name, "-verify_return_error", "-showcerts"]
    args += ["-servername", sni] if sni else ["-noservername"]
    if endpoint.tls != "implicit":
        args += ["-starttls", "smtp"]
    cmd = host.run("echo QUIT | openssl s_client " + " ".join(["%s"] * len(args)), *args)
    certs = PEM.findall(cmd.stdout)
    label = f"{endpoint.label} key {key_type} SNI {sni or '(none)'}"
    assert certs, f"{label}: no certificate served: {cmd.stderr[-600:]}"
    verified = re.search(r"Verify return code: (\d+) \(([^)]*)\)", cmd.stdout)
    return label, x509.load_pem_x509_certificate(certs[0].encode()), verified.groups() if verified else None


def dns_names(cert):
    return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)


@pytest.fixture(scope="module")
def tls_endpoints(deployment):
    return deployment.endpoints + deployment.implicit_endpoints


def test_every_name_serves_its_own_chain_of_every_key_type(host, deployment, tls_endpoints):
    for endpoint in tls_endpoints:
        for name in deployment.tls_names:
            for key_type in deployment.key_types:
                label, cert, verified = handshake(host, endpoint, key_type, sni=name, verify_name=name)
                assert name in dns_names(cert), f"{label}: certificate for {dns_names(cert)}"
                assert isinstance(cert.public_key(), KEY_CLASSES[key_type]), f"{label}: {cert.public_key()}"
                assert verified == ("0", "ok"), f"{label}: verification {verified}"


def test_a_client_without_sni_gets_the_listeners_own_name(host, deployment, tls_endpoints):
    for endpoint in tls_endpoints:
        for key_type in deployment.key_types:
            label, cert, verified = handshake(host, endpoint, key_type, sni=None, verify_name=endpoint.hostname)
            assert endpoint.hostname in dns_names(cert), f"{label}: certificate for {dns_names(cert)}"
            assert verified == ("0", "ok"), f"{label}: verification {verified}"


def test_an_unknown_sni_name_gets_the_listeners_own_name(host, deployment, tls_endpoints):
    for endpoint in tls_endpoints:
        label, cert, _ = handshake(host, endpoint, "ecdsa", sni="unknown.invalid", verify_name=endpoint.hostname)
        assert endpoint.hostname in dns_names(cert), f"{label}: certificate for {dns_names(cert)}"


def test_every_served_certificate_has_more_days_left_than_the_renewal_threshold(host, deployment):
    now = datetime.datetime.now(datetime.UTC)
    endpoint = deployment.endpoints[0]
    for name in deployment.tls_names:
        for key_type in deployment.key_types:
            label, cert, _ = handshake(host, endpoint, key_type, sni=name, verify_name=name)
            left = cert.not_valid_after_utc - now
            assert left > datetime.timedelta(days=deployment.renew_days), (
                f"{label}: {left.days} days left, threshold {deployment.renew_days}"
            )
