"""scripts/check-vault-files, run on a scratch repository."""

import pathlib
import subprocess

import pytest

CHECK = pathlib.Path(__file__).resolve().parents[1] / "check-vault-files"
ENCRYPTED = "$ANSIBLE_VAULT;1.1;AES256\n6162636465\n"


@pytest.fixture
def repo(tmp_path):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / ".gitignore").write_text("ignored/\n")
    return tmp_path


def check(repo):
    return subprocess.run([str(CHECK), str(repo)], capture_output=True, text=True, check=False)


def write(repo, relative, text):
    path = repo / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_encrypted_vault_files_pass(repo):
    write(repo, "inventory/production/group_vars/submission/vault.yml", ENCRYPTED)
    write(repo, "inventory/production/files/key.pem.vault", ENCRYPTED)
    write(repo, "inventory/production/group_vars/submission/vault.yml.example", "vault_x: fill in\n")
    assert check(repo).returncode == 0, check(repo).stderr


@pytest.mark.parametrize(
    "relative", ["inventory/production/group_vars/submission/vault.yml", "inventory/production/files/key.pem.vault"]
)
def test_a_clear_vault_file_fails_by_name_tracked_or_not(repo, relative):
    write(repo, relative, "vault_submission_accounts: []\n")
    untracked = check(repo)
    assert untracked.returncode == 1 and f"{relative}: not encrypted" in untracked.stderr, untracked.stderr
    subprocess.run(["git", "-C", str(repo), "add", relative], check=True)
    assert check(repo).returncode == 1


def test_an_ignored_file_is_not_the_repositorys(repo):
    write(repo, "ignored/vault.yml", "clear: text\n")
    assert check(repo).returncode == 0
