"""The validation service on a SQLite store from before a rule changed. (In a
fleet, migration 103 removes such rows and the database refuses them.)"""

import pytest
from sender_validation.service import InputError, SenderService
from sender_validation.store import SqliteStore
from test_service import ALICE, BOB, SETTINGS


def test_a_pair_stored_before_the_rule_refused_its_kind_can_still_be_removed(tmp_path):
    """The page lists what the store holds; an address the rule now refuses
    (a domain whose last label is all digits) goes as listed. A refused
    address that is not stored is still an input error."""
    store = SqliteStore(str(tmp_path / "senders.sqlite"))
    store.migrate()
    with store.transaction():
        store.db.execute(
            "INSERT INTO validated_senders (sender, login, source, validated_at) VALUES (?, ?, 'user', 0)",
            ("old@192.0.2.1", ALICE),
        )
    service = SenderService(store, SETTINGS, mailer=lambda *_: None)
    assert store.senders(ALICE, 0) == (["old@192.0.2.1"], [])
    with pytest.raises(InputError):  # not Bob's: for him it is a refused address
        service.remove(BOB, "old@192.0.2.1")
    assert service.remove(ALICE, "old@192.0.2.1") is True
    assert store.senders(ALICE, 0) == ([], [])
    with pytest.raises(InputError):
        service.remove(ALICE, "old@192.0.2.1")
    store.close()
