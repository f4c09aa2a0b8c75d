import hashlib

import pytest
from ansible_collections.mailops.submission.plugins.module_utils.sender_table import (
    Summary,
    TableError,
    apply_changes,
    find_line,
    header,
    pairs_to_table,
    parse_bulk,
    parse_entry,
    parse_pairs,
    parse_table,
    read_header,
    render_body,
)

ALICE = "alice@runbox.com"
BOB = "bob@hosted.example"
CAROL = "carol@runbox.com"


def test_bulk_lines_are_parsed_and_normalised():
    text = "# validated\n\nAlice.Ext@Gmail.Example  alice@runbox.com\n@hosted.example\tBOB@hosted.example\n"
    assert parse_pairs(text, "src f") == [("alice.ext@gmail.example", ALICE), ("@hosted.example", BOB)]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ok@runbox.com alice@runbox.com\nbad%x@runbox.com alice@runbox.com\n", "src f line 2: 'bad%x@runbox.com'"),
        ("a@runbox.com\n", "src f line 1: 'a@runbox.com': expected 'sender login'"),
        ("a@runbox.com alice@runbox.com extra\n", "line 1"),
        ("a@runbox.com @runbox.com\n", "line 1: '@runbox.com': a login needs a local part"),
    ],
)
def test_a_bad_bulk_line_is_named(text, message):
    with pytest.raises(TableError) as caught:
        parse_pairs(text, "src f")
    assert message in str(caught.value)


def test_entries_are_validated_and_named():
    assert parse_entry(0, {"sender": "A@RunBox.com", "login": ALICE, "state": "present"}) == (
        "a@runbox.com",
        ALICE,
        "present",
    )
    assert parse_entry(0, {"sender": "a@runbox.com", "login": None, "state": "absent"}) == (
        "a@runbox.com",
        None,
        "absent",
    )
    with pytest.raises(TableError, match=r"entries\[3\].*'x y@runbox.com'.*whitespace"):
        parse_entry(3, {"sender": "x y@runbox.com", "login": ALICE, "state": "present"})
    with pytest.raises(TableError, match=r"entries\[1\].*login is required"):
        parse_entry(1, {"sender": "x@runbox.com", "login": None, "state": "present"})


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


def test_render_and_parse_round_trip_with_header():
    table = {"@hosted.example": f"{ALICE},{BOB}", "alice.smith@runbox.com": ALICE}
    body = render_body(table)
    assert body == "@hosted.example\talice@runbox.com,bob@hosted.example\nalice.smith@runbox.com\talice@runbox.com\n"
    data = header("abc", body.encode(), 2, 3, 123) + body.encode()
    fields, offset = read_header(data)
    assert fields == {
        "input": "abc",
        "body": hashlib.sha256(body.encode()).hexdigest(),
        "keys": "2",
        "pairs": "3",
        "bodysize": str(len(body.encode())),
        "stamp": "123",
    }
    assert data[offset:] == body.encode()
    assert parse_table(data[offset:].decode(), "t") == table


def test_a_file_without_header_is_read_whole():
    assert read_header(b"a@runbox.com alice@runbox.com\n") == ({}, 0)


@pytest.mark.parametrize("key", ["a@x.example", "b@x.example", "c@x.example", "0@x.example", "z@x.example", "b"])
def test_find_line_agrees_with_a_sorted_list(key):
    keys = ["a@x.example", "a.b@x.example", "b@x.example", "c@x.example", "ca@x.example"]
    body = "".join(f"{k}\tl@x.example\n" for k in sorted(keys)).encode()
    start, end, exists = find_line(body, key.encode())
    assert exists == (key in keys)
    lines_before = body[:start].count(b"\n")
    assert lines_before == sum(k < key for k in keys)
    if exists:
        assert body[start:end] == f"{key}\tl@x.example\n".encode()
    assert find_line(b"", key.encode()) == (0, 0, False)


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


def test_bulk_fast_path_agrees_with_the_line_parser():
    text = (
        "B@Hosted.Example bob@hosted.example\n# note\n\n"
        "b@hosted.example CAROL@runbox.com\nx@runbox.com alice@runbox.com"
    )
    assert parse_bulk(text, "f") == pairs_to_table(parse_pairs(text, "f"))
    assert parse_bulk(text, "f") == {"b@hosted.example": f"{BOB},{CAROL}", "x@runbox.com": ALICE}
