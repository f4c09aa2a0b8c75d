"""Dovecot's users file from the accounts, and whose password a new one changes
(account_rules.users_file_lines, credential_changes): the logins whose web
sessions submission_sasl ends."""

from ansible_collections.mailops.submission.plugins.module_utils.account_rules import (
    credential_changes,
    users_file_lines,
)

ALICE_HASH = "$6$alicesalt$aaaa"
NEW_ALICE_HASH = "$6$newsalt$bbbb"
BOB_HASH = "{BLF-CRYPT}$2y$10$bobbobbob"
ALICE = {"address": "Alice@Runbox.com", "password_hash": ALICE_HASH}
BOB = {"address": "bob@hosted.example", "password_hash": BOB_HASH}


def test_each_account_has_a_canonical_line_and_the_primary_domain_a_bare_one():
    assert users_file_lines([BOB, ALICE], "runbox.com") == [
        f"alice@runbox.com:{{CRYPT}}{ALICE_HASH}::::::user=alice@runbox.com",
        f"alice:{{CRYPT}}{ALICE_HASH}::::::user=alice@runbox.com",
        f"bob@hosted.example:{BOB_HASH}::::::user=bob@hosted.example",
    ]


def file_of(accounts):
    return "# managed\n" + "\n".join(users_file_lines(accounts, "runbox.com")) + "\n"


def test_the_same_accounts_change_no_credential():
    assert credential_changes(file_of([ALICE, BOB]), [BOB, ALICE]) == []


def test_a_changed_password_names_its_canonical_login_only():
    changed = dict(ALICE, password_hash=NEW_ALICE_HASH)
    assert credential_changes(file_of([ALICE, BOB]), [changed, BOB]) == ["alice@runbox.com"]


def test_a_scheme_prefix_that_dovecot_reads_the_same_is_no_change():
    assert credential_changes(file_of([ALICE]), [dict(ALICE, password_hash="{CRYPT}" + ALICE_HASH)]) == []


def test_a_removed_account_is_a_change_and_a_new_one_is_not():
    carol = dict(ALICE, address="carol@runbox.com")
    assert credential_changes(file_of([ALICE, BOB]), [BOB, carol]) == ["alice@runbox.com"]


def test_no_file_yet_changes_nothing():
    assert credential_changes("", [ALICE, BOB]) == []
