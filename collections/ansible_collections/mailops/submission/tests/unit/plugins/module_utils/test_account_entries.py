"""One check of account entries (account_rules.account_entry_problems), which
the inventory's account_problems and the fleet_accounts module's
normalize_accounts report each their way."""

import pytest
from ansible_collections.mailops.submission.plugins.module_utils.account_rules import (
    account_entry_problems,
    account_problems,
)
from ansible_collections.mailops.submission.plugins.module_utils.fleet_accounts import (
    AccountError,
    normalize_accounts,
)

HASH = "$6$ZRqKrkOtCAsTz6bk$p0Hnj5DB1gCgVgEtQH5msOPkpjAznihmLC8PkHFO.QhffwA/xJ4X1u3.daH6FN8pElxxIbEsHBLCvrW1pN6nQ0"
ALICE = {"address": "alice@runbox.com", "password_hash": HASH}


def test_the_problems_come_entry_by_entry_and_never_hold_a_secret():
    entries = [
        "not a mapping",
        {"address": "a..b@runbox.com", "password_hash": "$1$salt$hash", "password": "Sekr1t-pw"},
        ALICE,
        dict(ALICE, address="Alice@Runbox.com"),
    ]
    problems = list(account_entry_problems(entries))
    assert [(p.index, p.kind, p.login, p.first) for p in problems] == [
        (0, "entry", None, None),
        (1, "address", None, None),
        (1, "password", None, None),
        (1, "password_hash", None, None),
        (3, "listed", "alice@runbox.com", 2),
    ]
    assert "MD5-crypt" in problems[3].reason
    assert not any("Sekr1t-pw" in str(p) or "$1$salt" in str(p) for p in problems)


def test_an_absent_entry_needs_no_hash_where_entries_have_states():
    absent = {"address": "alice@runbox.com", "state": "absent"}
    assert list(account_entry_problems([absent], states=True)) == []
    assert [p.kind for p in account_entry_problems([absent])] == ["password_hash"]
    assert [p.kind for p in account_entry_problems([absent, ALICE], states=True)] == ["listed"]


# The same problem, as each caller says it (the messages they always gave).
@pytest.mark.parametrize(
    ("entries", "inventory", "module"),
    [
        (
            [{"address": "carol", "password_hash": HASH}],
            "carol: the address is not a login",
            "accounts[0]: address 'carol'",
        ),
        (
            [{**ALICE, "password_hash": "{PLAIN}x"}],
            "alice@runbox.com: password_hash uses the PLAIN scheme",
            "accounts[0] (alice@runbox.com): password_hash uses the PLAIN scheme",
        ),
        (
            [{**ALICE, "password": "Sekr1t-pw"}],
            "alice@runbox.com: a clear-text password",
            "accounts[0] (alice@runbox.com): a clear-text password",
        ),
        (
            [ALICE, ALICE, dict(ALICE, address="ALICE@runbox.com")],
            "alice@runbox.com: listed 3 times",
            "accounts[1] (alice@runbox.com): listed already as accounts[0]",
        ),
        (["x"], "account #1: not a mapping", "accounts[0]: not a mapping"),
    ],
)
def test_each_caller_reports_the_one_checks_problems_its_way(entries, inventory, module):
    [line] = account_problems(entries)
    assert line.startswith(inventory), line
    with pytest.raises(AccountError) as raised:
        normalize_accounts(entries)
    assert str(raised.value).startswith(module), raised.value
    assert "Sekr1t-pw" not in line + str(raised.value)


def test_the_inventory_names_repeated_logins_in_the_order_they_first_come():
    bob = {"address": "bob@runbox.com", "password_hash": HASH}
    assert account_problems([ALICE, bob, bob, ALICE]) == [
        "alice@runbox.com: listed 2 times",
        "bob@runbox.com: listed 2 times",
    ]
