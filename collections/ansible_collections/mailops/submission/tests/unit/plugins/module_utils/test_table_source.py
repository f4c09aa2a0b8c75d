import hashlib

import pytest
from ansible_collections.mailops.submission.plugins.module_utils.table_source import (
    find_line,
    header,
    parse_table,
    read_header,
    render_body,
    render_pair_lines,
    sort_pair_lines,
)

ALICE = "alice@runbox.com"
BOB = "bob@hosted.example"


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


def test_pair_lines_render_as_their_table_does():
    """Sorted lines give render_body's text, whatever the separator; a key that starts
    another (the separator sorts below every character of a key) comes first."""
    text = (
        "b@x.example\tbob@x.example\n"
        "a@x.example.org alice@x.example\n"
        "a@x.example bob@x.example\n"
        "a#b@x.example\talice@x.example\n"
        "@x.example alice@x.example\n"
        "a.b@x.example alice@x.example\n"
    )
    table = dict(line.split() for line in text.splitlines())
    assert render_pair_lines(sort_pair_lines(text)) == render_body(table)
    assert render_pair_lines(sort_pair_lines("")) == render_body({}) == ""
