"""submission_sasl's account check, run for real with ansible-playbook at the
highest verbosity: a bad account stops the play with a message that names it
by its address, and neither a clear password nor any hash reaches the output."""

CLEAR_PASSWORD = "Clear-Sekr1t-in-inventory"  # noqa: S105 (a test value the output must not show)
MD5_HASH = "$1$saltsalt$Vx0mIvKgZ9Tw0rGnvb.9e1"
GOOD_HASH = "{SHA512-CRYPT}$6$ZRqKrkOtCAsTz6bk$p0Hnj5DB1gCgVgEtQH5msOPkpjAznihmLC8PkHFO"


def check_accounts(run_play, accounts):
    include = {"name": "submission_sasl", "tasks_from": "check_accounts"}
    return run_play(
        # submission_domain: every inventory sets it; the role's dependency
        # (submission_common) checks it first.
        {"submission_domain": "runbox.com", "submission_sasl_accounts": accounts},
        {"tasks": [{"name": "Check the accounts as the role does", "ansible.builtin.include_role": include}]},
        "-vvvv",
        callback="ansible.builtin.default",
    )


def test_bad_accounts_are_named_by_address_and_no_secret_is_printed(run_play):
    rc, out = check_accounts(
        run_play,
        [
            {"address": "good@runbox.com", "password_hash": GOOD_HASH},
            {"address": "clear@runbox.com", "password_hash": GOOD_HASH, "password": CLEAR_PASSWORD},
            {"address": "md5@runbox.com", "password_hash": MD5_HASH},
        ],
    )
    assert rc == 2, out[-3000:]
    assert "clear@runbox.com: a clear-text password" in out, out[-3000:]
    assert "md5@runbox.com: password_hash uses MD5-crypt" in out, out[-3000:]
    assert "good@runbox.com" not in out, "a good account was reported"
    for secret in (CLEAR_PASSWORD, MD5_HASH, GOOD_HASH, "saltsalt", "ZRqKrkOtCAsTz6bk"):
        assert secret not in out, f"{secret} printed at -vvvv"


def test_good_accounts_pass(run_play):
    rc, out = check_accounts(run_play, [{"address": "good@runbox.com", "password_hash": GOOD_HASH}])
    assert rc == 0, out[-3000:]
    assert GOOD_HASH not in out and "ZRqKrkOtCAsTz6bk" not in out
