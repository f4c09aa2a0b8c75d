"""The identity invariants an inventory must keep (account_rules.identity_problems)."""

import pytest
from ansible_collections.mailops.submission.plugins.module_utils.account_rules import identity_problems

ALICE = {"address": "alice@runbox.com", "aliases": ["a.smith@runbox.com"], "external_senders": ["alice@gmail.example"]}
BOB = {"address": "bob@hosted.example", "domains": ["hosted.example"]}


def test_a_well_kept_inventory_has_no_problems():
    assert identity_problems([ALICE, BOB], "runbox.com") == []


@pytest.mark.parametrize(
    ("account", "problem"),
    [
        (
            {"address": "eve@runbox.com", "external_senders": ["@gmail.example"]},
            "eve@runbox.com: external_senders has @gmail.example, a whole domain",
        ),
        (
            {"address": "eve@runbox.com", "aliases": ["@runbox.com"]},
            "eve@runbox.com: aliases has @runbox.com, a whole domain",
        ),
        (
            {"address": "eve@runbox.com", "domains": ["Runbox.com"]},
            "eve@runbox.com: domains has Runbox.com, the primary domain",
        ),
        (
            {"address": "eve@runbox.com", "domains": ["hosted.example"]},
            "hosted.example: in the domains of bob@hosted.example, eve@runbox.com; a domain has one owner",
        ),
        (
            {"address": "eve@runbox.com", "aliases": ["A.Smith@runbox.com"]},
            "a.smith@runbox.com: claimed by alice@runbox.com, eve@runbox.com; one owner",
        ),
        (
            {"address": "eve@runbox.com", "external_senders": ["info@hosted.example"]},
            "eve@runbox.com: external_senders has info@hosted.example, inside the provider's domain hosted.example",
        ),
        (
            {"address": "eve@runbox.com", "external_senders": ["postmaster@runbox.com"]},
            "eve@runbox.com: external_senders has postmaster@runbox.com, inside the provider's domain runbox.com",
        ),
    ],
)
def test_each_broken_invariant_names_the_account_and_the_key(account, problem):
    problems = identity_problems([ALICE, BOB, account], "runbox.com")
    assert len(problems) == 1 and problems[0].startswith(problem), problems


def test_an_address_listed_as_shared_may_have_two_owners():
    eve = {"address": "eve@runbox.com", "aliases": ["sales@runbox.com"]}
    alice = dict(ALICE, aliases=["sales@runbox.com"])
    assert identity_problems([alice, eve], "runbox.com", shared_senders=["Sales@runbox.com"]) == []
    assert identity_problems([alice, eve], "runbox.com") != []


def test_extra_validated_pairs_stay_outside_the_providers_domains():
    validated = [
        {"sender": "ok@gmail.example", "login": "alice@runbox.com"},
        {"sender": "info@hosted.example", "login": "alice@runbox.com"},
        {"sender": "gone@runbox.com", "login": "alice@runbox.com", "state": "absent"},
    ]
    assert identity_problems([ALICE, BOB], "runbox.com", validated=validated) == [
        "alice@runbox.com: submission_allowlist_validated has info@hosted.example, inside the provider's domain "
        "hosted.example; such an address belongs to an account (address, alias or domain), never to a validation"
    ]
