"""submission_tls with operator-supplied files, run for real with ansible-playbook on this machine.

The role checks the files before it installs anything: a key that does not
belong to the certificate, or a certificate that does not cover a service name,
stops the play with a message naming the file or the name, and nothing lands
in the certificate directory.
"""

import datetime
import os

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

NAMES = ["smtp.example.net", "secure.example.net"]


def make_cert(tmp_path, stem, names, kind="ecdsa", days=30):
    key = ec.generate_private_key(ec.SECP256R1()) if kind == "ecdsa" else rsa.generate_private_key(65537, 2048)
    now = datetime.datetime.now(datetime.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=2))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path = tmp_path / f"{stem}.crt"
    key_path = tmp_path / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def apply_role(run_play, tmp_path, pairs, key_types=("ecdsa", "rsa")):
    play_vars = {
        "submission_domain": "example.net",
        "submission_tls_names": NAMES,
        "submission_tls_source": "files",
        "submission_common_tls_dir": f"{tmp_path}/installed",
        "submission_tls_files": [{"cert": str(cert), "key": str(key)} for cert, key in pairs],
        "submission_tls_key_types": list(key_types),
        # No Postfix here: the role's own reload handler stays out.
        "submission_tls_reload_postfix": False,
    }
    return run_play(play_vars, {"roles": ["submission_tls"]})


pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the role installs packages: run as root")


def installed_chains(tmp_path):
    chains = tmp_path / "installed/chains"
    return sorted(p.name for p in chains.iterdir()) if chains.exists() else []


def test_each_name_and_key_type_gets_a_root_only_chain_with_the_key_first(run_play, play_stats, tmp_path):
    ecdsa_pair = make_cert(tmp_path, "ecdsa", NAMES)
    rsa_pair = make_cert(tmp_path, "rsa", NAMES, kind="rsa")
    rc, out = apply_role(run_play, tmp_path, [rsa_pair, ecdsa_pair])
    assert rc == 0, out[-3000:]
    assert installed_chains(tmp_path) == sorted(f"{n}.{t}.pem" for n in NAMES for t in ("ecdsa", "rsa"))
    for name in NAMES:
        for kind, (cert, _key) in (("ecdsa", ecdsa_pair), ("rsa", rsa_pair)):
            chain = tmp_path / f"installed/chains/{name}.{kind}.pem"
            text = chain.read_text()
            assert text.startswith("-----BEGIN PRIVATE KEY-----"), f"{chain} does not start with its key"
            assert text.index("PRIVATE KEY") < text.index("BEGIN CERTIFICATE")
            assert cert.read_text().strip() in text, f"{chain} does not hold {cert}"
            assert chain.stat().st_mode & 0o077 == 0
    assert (tmp_path / "installed/private").stat().st_mode & 0o077 == 0
    assert "PRIVATE KEY" not in out, "a key was logged"

    rc, out = apply_role(run_play, tmp_path, [rsa_pair, ecdsa_pair])
    assert rc == 0, out[-3000:]
    stats = play_stats(out)
    assert stats["changed"] == 0 and stats["failures"] == 0, f"a second run changed something: {stats}"


def test_a_key_of_another_certificate_is_refused(run_play, tmp_path):
    cert, _ = make_cert(tmp_path, "good", NAMES)
    _, other_key = make_cert(tmp_path, "other", NAMES)
    rc, out = apply_role(run_play, tmp_path, [(cert, other_key)], key_types=["ecdsa"])
    assert rc != 0
    assert f"The key in {other_key} does not match the certificate in {cert}" in out, out[-2000:]
    assert installed_chains(tmp_path) == []
    assert not (tmp_path / "installed/private/supplied-0.key").exists()


def test_a_name_without_a_certificate_is_refused_by_name_and_key_type(run_play, tmp_path):
    partial = make_cert(tmp_path, "partial", ["smtp.example.net"])
    rc, out = apply_role(run_play, tmp_path, [partial], key_types=["ecdsa"])
    assert rc != 0
    assert "No ecdsa certificate in submission_tls_files covers secure.example.net" in out, out[-2000:]
    assert installed_chains(tmp_path) == []


def test_a_missing_key_type_is_refused(run_play, tmp_path):
    only_ecdsa = make_cert(tmp_path, "ecdsa", NAMES)
    rc, out = apply_role(run_play, tmp_path, [only_ecdsa])
    assert rc != 0
    assert "No rsa certificate in submission_tls_files covers smtp.example.net" in out, out[-2000:]
    assert installed_chains(tmp_path) == []


def test_an_expired_certificate_is_refused(run_play, tmp_path):
    expired = make_cert(tmp_path, "expired", NAMES, days=-1)
    rc, out = apply_role(run_play, tmp_path, [expired], key_types=["ecdsa"])
    assert rc != 0
    assert f"The certificate in {expired[0]} expired on" in out, out[-2000:]
    assert installed_chains(tmp_path) == []


def test_a_wildcard_certificate_covers_both_names(run_play, tmp_path):
    wild = make_cert(tmp_path, "wild", ["*.example.net"])
    rc, out = apply_role(run_play, tmp_path, [wild], key_types=["ecdsa"])
    assert rc == 0, out[-2000:]
    assert installed_chains(tmp_path) == sorted(f"{n}.ecdsa.pem" for n in NAMES)


def test_a_play_that_names_no_certificate_source_stops_before_anything(run_play, tmp_path):
    play_vars = {
        "submission_domain": "example.net",
        "submission_tls_names": NAMES,
        "submission_common_tls_dir": f"{tmp_path}/installed",
        "submission_tls_reload_postfix": False,
    }
    rc, out = run_play(play_vars, {"roles": ["submission_tls"]})
    assert rc != 0, "the role ran without submission_tls_source"
    assert "submission_tls_source" in out, out[-3000:]
    assert not (tmp_path / "installed").exists(), "the role wrote files before it stopped"


def test_a_name_that_is_not_a_canonical_dns_name_stops_the_play_before_anything(run_play, tmp_path):
    """The names become certificates and file names as written: the collection's
    DNS-name test (mailops.submission.dns_name) holds for each, or the play stops."""
    play_vars = {
        "submission_domain": "example.net",
        "submission_tls_names": ["smtp.example.net", "Secure.example.net", "mail.example.123", "x.xn--p1ai"],
        "submission_tls_source": "local_ca",
        "submission_common_tls_dir": f"{tmp_path}/installed",
        "submission_tls_reload_postfix": False,
    }
    rc, out = run_play(play_vars, {"roles": ["submission_tls"]})
    assert rc != 0, out[-3000:]
    # The play's output is JSON: the message's quotes come escaped.
    for refused in ("Secure.example.net", "mail.example.123"):
        assert f'submission_tls_names: \\"{refused}\\" is not a DNS name' in out, out[-3000:]
    for accepted in ("smtp.example.net", "x.xn--p1ai"):
        assert f'\\"{accepted}\\" is not a DNS name' not in out, out[-3000:]
    assert not (tmp_path / "installed").exists(), "the role wrote files before it stopped"
