"""submission_tls with operator-supplied files, run for real with ansible-playbook on this machine.

The role checks the files before it installs anything: a key that does not
belong to the certificate, or a certificate that does not cover a service name,
stops the play with a message naming the file or the name, and nothing lands
in the certificate directory.
"""

import datetime
import json
import os
import pathlib
import subprocess
import sys

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

REPO = pathlib.Path(__file__).resolve().parents[3]
NAMES = ["smtp.example.net", "secure.example.net"]


def make_cert(tmp_path, stem, names, key=None):
    key = key or ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
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


def apply_role(tmp_path, cert, key):
    playbook = tmp_path / "play.yml"
    playbook.write_text(
        f"""
- hosts: localhost
  connection: local
  gather_facts: false
  vars:
    submission_domain: example.net
    submission_tls_source: files
    submission_tls_dir: {tmp_path}/installed
    submission_tls_cert_file: {cert}
    submission_tls_key_file: {key}
  roles:
    - submission_tls
  handlers:
    - name: Postfix stand-in
      ansible.builtin.debug:
        msg: reload
      listen: Check and reload Postfix
"""
    )
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
        ANSIBLE_ROLES_PATH=str(REPO / "roles"),
        ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
        ANSIBLE_LOCALHOST_WARNING="false",
        PATH=f"{pathlib.Path(sys.executable).parent}:{os.environ['PATH']}",
    )
    run = subprocess.run(
        ["ansible-playbook", "-i", "localhost,", "-e", f"ansible_python_interpreter={sys.executable}", str(playbook)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        check=False,
    )
    return run.returncode, run.stdout + run.stderr


pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the role installs packages: run as root")


def test_matching_files_are_installed_root_only(tmp_path):
    cert, key = make_cert(tmp_path, "good", NAMES)
    rc, out = apply_role(tmp_path, cert, key)
    assert rc == 0, out
    installed = tmp_path / "installed"
    assert (installed / "service.crt").read_bytes().strip() == cert.read_bytes().strip()
    key_file = installed / "private/service.key"
    assert key_file.stat().st_mode & 0o077 == 0
    assert (installed / "private").stat().st_mode & 0o077 == 0
    assert "PRIVATE KEY" not in out, "the key was logged"


def test_a_key_of_another_certificate_is_refused(tmp_path):
    cert, _ = make_cert(tmp_path, "good", NAMES)
    _, other_key = make_cert(tmp_path, "other", NAMES)
    rc, out = apply_role(tmp_path, cert, other_key)
    assert rc != 0
    assert f"The key in {other_key} does not match the certificate in {cert}" in json.dumps(out), out[-2000:]
    assert not (tmp_path / "installed/private/service.key").exists()


def test_a_certificate_missing_a_name_is_refused(tmp_path):
    cert, key = make_cert(tmp_path, "partial", ["smtp.example.net"])
    rc, out = apply_role(tmp_path, cert, key)
    assert rc != 0
    assert "does not cover secure.example.net" in out, out[-2000:]
    assert not (tmp_path / "installed/service.crt").exists()


def test_a_wildcard_certificate_covers_both_names(tmp_path):
    cert, key = make_cert(tmp_path, "wild", ["*.example.net"])
    rc, out = apply_role(tmp_path, cert, key)
    assert rc == 0, out[-2000:]
