import pytest
from ansible_collections.mailops.submission.plugins.module_utils.sender_table import (
    Summary,
    TableError,
    apply_changes,
    normalize_entry,
)

ALICE = "alice@runbox.com"
BOB = "bob@hosted.example"
CAROL = "carol@runbox.com"


def test_entries_are_normalised_and_a_bad_one_is_named():
    assert normalize_entry(0, {"sender": "A@RunBox.com", "login": "Alice@RUNBOX.com", "state": "present"}) == (
        "a@runbox.com",
        ALICE,
        "present",
    )
    assert normalize_entry(0, {"sender": "a@runbox.com", "login": None, "state": "absent"}) == (
        "a@runbox.com",
        None,
        "absent",
    )
    with pytest.raises(TableError, match=r"entries\[3\].*'x y@runbox.com'.*whitespace"):
        normalize_entry(3, {"sender": "x y@runbox.com", "login": ALICE, "state": "present"})
    with pytest.raises(TableError, match=r"entries\[1\].*login 'a\.\.b@runbox\.com'"):
        normalize_entry(1, {"sender": "x@runbox.com", "login": "a..b@runbox.com", "state": "present"})


def test_adding_merges_logins_of_a_key():
    current = {"@hosted.example": BOB}
    entries = [("@hosted.example", ALICE, "present"), ("alice.smith@runbox.com", ALICE, "present")]
    desired = apply_changes(current, entries, {}, exclusive=False)
    assert desired == {"@hosted.example": f"{ALICE},{BOB}", "alice.smith@runbox.com": ALICE}


def test_absent_removes_one_login_or_the_whole_key():
    current = {"@hosted.example": f"{ALICE},{BOB}", "x@runbox.com": ALICE}
    entries = [("@hosted.example", ALICE, "absent"), ("x@runbox.com", None, "absent")]
    assert apply_changes(current, entries, {}, exclusive=False) == {"@hosted.example": BOB}


def test_exclusive_keeps_only_what_was_given():
    current = {"old@runbox.com": ALICE, "@hosted.example": BOB}
    desired = apply_changes(current, [("@hosted.example", BOB, "present")], {"n@runbox.com": ALICE}, True)
    assert desired == {"@hosted.example": BOB, "n@runbox.com": ALICE}


def test_summary_counts_and_samples_changes():
    current = {"a@runbox.com": ALICE, "b@runbox.com": f"{ALICE},{BOB}", "c@runbox.com": BOB}
    desired = {"a@runbox.com": ALICE, "b@runbox.com": BOB, "d@runbox.com": f"{BOB},{CAROL}"}
    summary = Summary(current, desired, key_limit=10)
    assert (summary.added, summary.removed) == (2, 2)
    assert summary.keys_to_write == ["b@runbox.com", "d@runbox.com"]
    assert summary.keys_to_delete == ["c@runbox.com"]
    before, after = summary.diff()
    assert before == f"b@runbox.com {ALICE}\nc@runbox.com {BOB}\n"
    assert after == f"d@runbox.com {BOB}\nd@runbox.com {CAROL}\n"
    assert Summary(current, desired, key_limit=1).keys_to_write is None
    fresh = Summary({}, desired, key_limit=-1)
    assert (fresh.added, fresh.removed, fresh.keys_to_write) == (4, 0, None)
    unchanged = Summary(desired, dict(desired), key_limit=10)
    assert (unchanged.added, unchanged.removed, unchanged.keys_to_write, unchanged.keys_to_delete) == (0, 0, [], [])
