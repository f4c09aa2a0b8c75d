import pytest
from ansible_collections.mailops.submission.plugins.module_utils.bulk_load import BulkParse, parse_pairs
from ansible_collections.mailops.submission.plugins.module_utils.sender_address import (
    BULK_FILE_RE,
    SHORT_BULK_FILE_RE,
)
from ansible_collections.mailops.submission.plugins.module_utils.sender_table import TableError, pairs_to_table
from ansible_collections.mailops.submission.plugins.module_utils.table_source import render_body, render_pair_lines
from hypothesis import Phase, assume, find, given, settings
from hypothesis import strategies as st

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


def test_the_fast_path_reads_the_same_table_as_the_line_parser():
    text = (
        "B@Hosted.Example bob@hosted.example\n# note\n\n"
        "b@hosted.example CAROL@runbox.com\nx@runbox.com alice@runbox.com"
    )
    bulk = BulkParse(text, "f")
    assert bulk.confirmed()
    assert bulk.table == pairs_to_table(parse_pairs(text, "f"))
    assert bulk.table == {"b@hosted.example": f"{BOB},{CAROL}", "x@runbox.com": ALICE}


# BULK_FILE_RE restates the address rules as one regex over a whole file. On
# files of ASCII lines (as machine-written exports are), it must accept exactly
# the files the line parser accepts, and the split it allows must give the same
# table; anything else it gets wrong is either a slow path taken for nothing or
# a bad address let through.
ATOM = "abcXYZ09+-_=$&'*/?^`{|}~"
NEAR_MISS = ATOM + '.#%!,:;"()<>[]@\\'
shaped_labels = st.from_regex(r"[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,6}[a-zA-Z0-9])?", fullmatch=True)
shaped_domains = st.lists(shaped_labels, min_size=2, max_size=3).map(".".join)
# Addresses of the accepted shape, so that whole files of them are accepted;
# and near misses: odd characters, empty labels, limits crossed by one octet.
senders = st.builds(
    lambda local, domain: f"{local}@{domain}",
    st.one_of(st.just(""), st.lists(st.text(alphabet=ATOM, min_size=1, max_size=6), max_size=3).map(".".join)),
    shaped_domains,
)
logins = st.builds(
    lambda local, domain: f"{local}@{domain}",
    st.lists(st.text(alphabet="abZ09_+-", min_size=1, max_size=6), min_size=1, max_size=2).map(".".join),
    shaped_domains,
)
near_misses = st.builds(
    lambda local, domain: f"{local}@{domain}",
    st.one_of(st.text(alphabet=NEAR_MISS, max_size=8), st.text(alphabet="a", min_size=63, max_size=66)),
    st.one_of(
        st.lists(st.text(alphabet="ab9-_.", max_size=4), min_size=1, max_size=3).map(".".join),
        st.builds(lambda label: f"{label}.example", st.text(alphabet="b", min_size=62, max_size=64)),
    ),
)
blanks = st.text(alphabet=" \t", max_size=2)
gaps = st.text(alphabet=" \t", min_size=1, max_size=2)


def pair_lines(sender, login):
    return st.builds(lambda *parts: "".join(parts), blanks, sender, gaps, login, blanks)


good_lines = st.one_of(
    pair_lines(senders, logins),
    pair_lines(senders, logins),
    blanks,
    st.builds(lambda lead, note: f"{lead}#{note}", blanks, st.text(alphabet="ab #@", max_size=5)),
)
bad_lines = st.one_of(
    pair_lines(near_misses, logins),
    pair_lines(senders, st.one_of(near_misses, senders)),
    senders,
    st.builds(lambda a, b, c: f"{a} {b} {c}", senders, logins, logins),
)
good_files = st.lists(good_lines, min_size=1, max_size=8).map("\n".join)
# A good file with one line that may be bad, at any place.
mixed_files = st.builds(
    lambda lines, bad, at: "\n".join([*lines[:at], bad, *lines[at:]]),
    st.lists(good_lines, max_size=6),
    bad_lines,
    st.integers(0, 6),
)
files = st.one_of(good_files, mixed_files)


def line_parser(text):
    try:
        return pairs_to_table(parse_pairs(text, "f"))
    except TableError:
        return None


@settings(max_examples=600, deadline=None)
@given(files)
def test_the_file_regex_accepts_exactly_what_the_line_parser_accepts(text):
    bulk = BulkParse(text, "f")
    expected = line_parser(text)
    assert bulk.confirmed() == (expected is not None), text
    if expected is not None:
        assert bulk.table == expected


@settings(max_examples=600, deadline=None)
@given(files)
def test_the_short_address_regex_decides_as_the_full_one(text):
    """SHORT_BULK_FILE_RE, which decides first, accepts what BULK_FILE_RE accepts
    where it applies: no '=?' and no word over 63 characters."""
    folded = text.lower() if text.endswith("\n") else text.lower() + "\n"
    assume("=?" not in folded and all(len(word) <= 63 for word in folded.split()))
    assert (SHORT_BULK_FILE_RE.fullmatch(folded) is not None) == (BULK_FILE_RE.fullmatch(folded) is not None), text


@settings(max_examples=300, deadline=None)
@given(files)
def test_the_sorted_lines_are_the_source_of_the_table(text):
    """Where a file's lines are the table's (one pair a line, one space or tab between,
    no key twice), they render the source the table does."""
    bulk = BulkParse(text, "f")
    lines = bulk.sorted_lines
    if bulk.confirmed() and lines is not None:
        assert render_pair_lines(lines) == render_body(bulk.table), text


def test_lines_that_are_not_one_pair_each_are_not_the_source():
    assert BulkParse("a@x.example  alice@x.example\n", "f").sorted_lines is None
    assert BulkParse("a@x.example alice@x.example\t\n", "f").sorted_lines is None
    assert BulkParse("a@x.example alice@x.example\nA@x.example bob@x.example\n", "f").sorted_lines is None
    assert BulkParse("# note\n\nb@x.example bob@x.example\na@x.example\talice@x.example", "f").sorted_lines == [
        "a@x.example\talice@x.example",
        "b@x.example bob@x.example",
    ]


def test_the_file_strategy_reaches_both_outcomes():
    """Guards the property above: it checks nothing unless generated files are
    both accepted (with several pairs) and refused."""
    # Found, not shrunk: shrinking a found file to the smallest one costs minutes.
    search = settings(max_examples=500, database=None, phases=[Phase.generate])
    accepted = find(files, lambda t: t.count("@") >= 6 and line_parser(t) not in (None, {}), settings=search)
    refused = find(files, lambda t: line_parser(t) is None, settings=search)
    assert BulkParse(accepted, "f").confirmed()
    assert not BulkParse(refused, "f").confirmed()
