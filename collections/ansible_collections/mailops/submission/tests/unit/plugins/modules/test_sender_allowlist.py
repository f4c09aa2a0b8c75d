"""The module against real files and Postfix's real postmap, without a target host."""

import importlib.util
import os

import pytest
from allowlist_harness import MODULE
from ansible_collections.mailops.submission.plugins.module_utils.bulk_load import parse_pairs
from ansible_collections.mailops.submission.plugins.module_utils.sender_table import pairs_to_table
from ansible_collections.mailops.submission.plugins.module_utils.table_source import render_body

BACKENDS_PACKAGE = "ansible_collections.mailops.submission.plugins.module_utils.allowlist_backends"

ALICE = "alice@runbox.com"
BOB = "bob@hosted.example"
CAROL = "carol@runbox.com"


def entries(*pairs, state="present"):
    return [{"sender": s, "login": lg, "state": state} for s, lg in pairs]


def test_a_new_table_is_built_and_postfix_reads_it(table):
    result = table.run(
        entries=entries(("Alice.Smith@RunBox.com", ALICE), ("@hosted.example", BOB), ("@hosted.example", ALICE))
    )
    assert result["changed"] is True, result
    assert (result["added"], result["removed"], result["pairs"], result["keys"]) == (3, 0, 3, 2)
    assert table.query("alice.smith@runbox.com", "@hosted.example", "nobody@runbox.com") == {
        "alice.smith@runbox.com": ALICE,
        "@hosted.example": f"{ALICE},{BOB}",
        "nobody@runbox.com": None,
    }
    assert table.files() == ["senders", "senders.lmdb"]
    assert oct(os.stat(table.path).st_mode & 0o777) == "0o644"


def test_the_same_content_changes_nothing(table):
    table.run(entries=entries(("a@runbox.com", ALICE)))
    before = [os.stat(p).st_mtime_ns for p in (table.path, f"{table.path}.lmdb")]
    again = table.run(entries=entries(("a@runbox.com", ALICE)))
    assert again["changed"] is False, again
    assert (again["added"], again["removed"], again["rebuild"]) == (0, 0, "none")
    # The same content from a different input (order, case) is recognised too.
    other = table.run(entries=entries(("A@RUNBOX.COM", "ALICE@runbox.com")))
    assert other["changed"] is False, other
    assert [os.stat(p).st_mtime_ns for p in (table.path, f"{table.path}.lmdb")] == before


def test_one_added_entry_is_applied_in_place(table):
    table.run(entries=entries(*[(f"u{i}@runbox.com", ALICE) for i in range(50)]))
    result = table.run(entries=entries(("new@runbox.com", CAROL)))
    assert (result["changed"], result["added"], result["rebuild"]) == (True, 1, "in-place")
    assert table.query("new@runbox.com", "u7@runbox.com") == {"new@runbox.com": CAROL, "u7@runbox.com": ALICE}
    assert "new@runbox.com\tcarol@runbox.com\n" in table.path.read_text()
    # The next change still finds source and map in step, and stays in place.
    again = table.run(entries=[{"sender": "u7@runbox.com", "state": "absent"}])
    assert (again["removed"], again["rebuild"]) == (1, "in-place"), again


def test_a_few_changed_keys_are_applied_to_a_copy_of_the_map(table):
    table.run(entries=entries(*[(f"u{i}@runbox.com", ALICE) for i in range(50)]))
    result = table.run(entries=entries(("new@runbox.com", CAROL), ("u3@runbox.com", BOB)))
    assert (result["changed"], result["added"], result["rebuild"]) == (True, 2, "incremental")
    assert table.query("new@runbox.com", "u3@runbox.com", "u4@runbox.com") == {
        "new@runbox.com": CAROL,
        "u3@runbox.com": f"{ALICE},{BOB}",
        "u4@runbox.com": ALICE,
    }
    assert table.files() == ["senders", "senders.lmdb"]


def test_absent_entries_remove_a_login_or_a_key(table):
    table.run(entries=entries(("@hosted.example", ALICE), ("@hosted.example", BOB), ("x@runbox.com", ALICE)))
    result = table.run(
        entries=[
            {"sender": "@hosted.example", "login": ALICE, "state": "absent"},
            {"sender": "x@runbox.com", "state": "absent"},
        ]
    )
    assert (result["added"], result["removed"], result["keys"]) == (0, 2, 1)
    assert table.query("@hosted.example", "x@runbox.com") == {"@hosted.example": BOB, "x@runbox.com": None}


def test_exclusive_removes_what_is_not_given(table, tmp_path):
    table.run(entries=entries(("old@runbox.com", ALICE), ("keep@runbox.com", ALICE)))
    src = tmp_path / "bulk.txt"
    src.write_text("# validated senders\nkeep@runbox.com alice@runbox.com\nfresh@runbox.com carol@runbox.com\n")
    result = table.run(src=str(src), exclusive=True)
    assert (result["added"], result["removed"], result["pairs"]) == (1, 1, 2)
    assert table.query("old@runbox.com", "fresh@runbox.com") == {"old@runbox.com": None, "fresh@runbox.com": CAROL}


def test_a_bad_entry_fails_names_it_and_writes_nothing(table):
    table.run(entries=entries(("a@runbox.com", ALICE)))
    source_before = table.path.read_bytes()
    result = table.run(entries=entries(("b@runbox.com", ALICE), ("evil%relay@runbox.com", ALICE)))
    assert result.get("failed") is True
    assert "entries[1]" in result["msg"] and "evil%relay@runbox.com" in result["msg"], result["msg"]
    assert table.path.read_bytes() == source_before
    assert table.query("b@runbox.com") == {"b@runbox.com": None}
    assert table.files() == ["senders", "senders.lmdb"]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"sender": "b@runbox.com"}, "state is present but all of the following are missing: login"),
        ({"sender": "b@runbox.com", "login": ALICE, "state": "gone"}, "state"),
        ({"sender": "b@runbox.com", "login": ALICE, "logins": BOB}, "logins"),
    ],
)
def test_an_entry_the_argument_spec_refuses_changes_nothing(table, entry, message):
    table.run(entries=entries(("a@runbox.com", ALICE)))
    before = (table.path.read_bytes(), (table.dir / "senders.lmdb").read_bytes())
    result = table.run(entries=[entry])
    assert result.get("failed") is True
    assert message in result["msg"] and "entries" in result["msg"], result["msg"]
    assert (table.path.read_bytes(), (table.dir / "senders.lmdb").read_bytes()) == before


@pytest.mark.parametrize("path", ["", None])
def test_an_empty_path_is_a_clear_failure_that_writes_nothing(table, path):
    """path: "" (or null, from a template) once ended in an uncaught StopIteration ("Module failed.")."""
    result = table.run(path=path, entries=entries(("a@runbox.com", ALICE)))
    assert result.get("failed") is True and result["msg"] == "path is empty: name the file to manage", result
    assert table.files() == []


def test_a_bad_src_line_is_named_and_nothing_is_written(table, tmp_path):
    src = tmp_path / "bulk.txt"
    src.write_text("a@runbox.com alice@runbox.com\nb@runbox.com, alice@runbox.com\n")
    result = table.run(src=str(src))
    assert result.get("failed") is True
    assert "line 2" in result["msg"] and "comma" in result["msg"], result["msg"]
    assert table.files() == []


def test_check_mode_reports_without_writing(table):
    table.run(entries=entries(("a@runbox.com", ALICE)))
    before = table.path.read_bytes()
    result = table.run(check=True, diff=True, entries=entries(("b@runbox.com", BOB)))
    assert (result["changed"], result["added"]) == (True, 1)
    assert result["diff"]["after"] == "b@runbox.com bob@hosted.example\n"
    assert table.path.read_bytes() == before
    assert table.query("b@runbox.com") == {"b@runbox.com": None}


def test_a_postmap_failure_in_an_in_place_update_changes_neither_file(table):
    table.run(entries=entries(("a@runbox.com", ALICE)))
    before = (table.path.read_bytes(), (table.dir / "senders.lmdb").read_bytes())
    result = table.run(entries=entries(("b@runbox.com", BOB)), postfix_config_dir=str(table.dir / "missing"))
    assert result.get("failed") is True
    assert "left unchanged" in result["msg"], result["msg"]
    assert (table.path.read_bytes(), (table.dir / "senders.lmdb").read_bytes()) == before
    assert table.query("a@runbox.com", "b@runbox.com") == {"a@runbox.com": ALICE, "b@runbox.com": None}
    assert table.files() == ["senders", "senders.lmdb"], "temporary files were left behind"


def test_a_hand_edit_is_noticed_and_repaired(table):
    table.run(entries=entries(("a@runbox.com", ALICE)))
    with open(table.path, "a") as handle:
        handle.write("smuggled@runbox.com\tcarol@runbox.com\n")
    result = table.run(entries=entries(("a@runbox.com", ALICE)), exclusive=True)
    assert (result["changed"], result["removed"]) == (True, 1), result
    assert "smuggled" not in table.path.read_text()


def test_concurrent_runs_lose_no_entries(table):
    procs = [table.start(entries=entries(*[(f"p{i}-{j}@runbox.com", ALICE) for j in range(200)])) for i in range(4)]
    for proc in procs:
        proc.communicate(timeout=120)
        assert proc.returncode == 0
    keys = [f"p{i}-{j}@runbox.com" for i in range(4) for j in (0, 199)]
    assert all(v == ALICE for v in table.query(*keys).values())
    assert table.path.read_text().count("\n") == 4 * 200 + 1


@pytest.mark.parametrize("map_type", ["hash", "cdb"])
def test_other_map_types(table, map_type):
    suffix = {"hash": ".db", "cdb": ".cdb"}[map_type]
    result = table.run(type=map_type, entries=entries(("a@runbox.com", ALICE)))
    assert result["changed"] is True, result
    assert table.files() == ["senders", f"senders{suffix}"]
    result = table.run(type=map_type, entries=entries(("b@runbox.com", BOB)))
    assert result["rebuild"] == ("in-place" if map_type == "hash" else "full")
    assert table.query("a@runbox.com", "b@runbox.com", map_type=map_type) == {
        "a@runbox.com": ALICE,
        "b@runbox.com": BOB,
    }


def bulk_file(tmp_path, lines=40000, extra=""):
    """A bulk file over 1 MiB: large enough for the parallel check and early postmap."""
    src = tmp_path / "bulk.txt"
    src.write_text("".join(f"User{i}@Dom{i % 97}.example login{i % 500}@runbox.com\n" for i in range(lines)) + extra)
    assert src.stat().st_size > 1 << 20
    return src


def test_a_large_bulk_load_builds_the_same_table_as_postfix_reads(table, tmp_path):
    src = bulk_file(tmp_path)
    result = table.run(src=str(src), exclusive=True)
    assert (result["changed"], result["pairs"], result["rebuild"]) == (True, 40000, "full"), result
    assert table.query("user0@dom0.example", "user39999@dom35.example", "user40000@dom0.example") == {
        "user0@dom0.example": "login0@runbox.com",
        "user39999@dom35.example": "login499@runbox.com",
        "user40000@dom0.example": None,
    }
    assert table.files() == ["senders", "senders.lmdb"]
    assert table.run(src=str(src), exclusive=True)["changed"] is False


def test_a_load_into_an_empty_table_has_the_source_and_diff_of_its_table(table, tmp_path):
    """Planned from the file's sorted lines, without the table: the same source, counts and diff."""
    src = bulk_file(tmp_path, extra="Carol@Runbox.com\tcarol@runbox.com\n")
    expected = pairs_to_table(parse_pairs(src.read_text(), "src"))
    result = table.run(diff=True, src=str(src), exclusive=True)
    assert (result["added"], result["pairs"], result["keys"], result["rebuild"]) == (40001, 40001, 40001, "full")
    assert table.path.read_text().split("\n", 1)[1] == render_body(expected)
    first = sorted(expected)[:1000]
    assert result["diff"]["after"] == "".join(f"{k} {expected[k]}\n" for k in first) + "... and 39001 more\n"
    assert result["diff"]["before"] == ""
    assert table.query("carol@runbox.com") == {"carol@runbox.com": CAROL}


def test_a_large_bulk_load_with_a_repeated_key_merges_its_logins(table, tmp_path):
    src = bulk_file(tmp_path, extra="user0@dom0.example carol@runbox.com\n")
    result = table.run(src=str(src), exclusive=True)
    assert result["pairs"] == 40001, result
    assert table.query("user0@dom0.example") == {"user0@dom0.example": "carol@runbox.com,login0@runbox.com"}


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("a@runbox.com b@runbox.com c@runbox.com\nd@runbox.com\n", "'a@runbox.com b@runbox.com c@runbox.com'"),
        ("a@runbox.com b@runbox.com #note\nc@runbox.com\n", "line 1"),
    ],
)
def test_a_load_whose_lines_are_not_pairs_is_refused_naming_the_line(table, tmp_path, text, line):
    """Planned from the sorted lines before the check answers: a line of three words or one
    is still refused by name, as the line-by-line parser names it, and nothing is written."""
    src = tmp_path / "bulk.txt"
    src.write_text(text)
    result = table.run(src=str(src), exclusive=True)
    assert result.get("failed") is True and line in result["msg"], result
    assert table.files() == []


@pytest.mark.parametrize("extra", ["\x0b\n", "\x0c\n", "\x1c\n"])
def test_a_load_with_a_line_break_other_than_newline_is_read_as_python_splits_lines(table, tmp_path, extra):
    """A vertical tab or form feed alone on a line is a blank line to the line parser (splitlines):
    the pairs are loaded, the blank line ignored."""
    src = tmp_path / "bulk.txt"
    src.write_text("a@runbox.com alice@runbox.com\n" + extra)
    result = table.run(src=str(src), exclusive=True)
    assert (result.get("failed"), result["changed"], result["keys"]) == (None, True, 1), result
    assert table.query("a@runbox.com") == {"a@runbox.com": "alice@runbox.com"}


def test_a_large_cdb_load_with_a_repeated_key_leaves_no_file_of_its_cancelled_map(table, tmp_path):
    """postmap starts on the file before its keys are known to be unique; a repeat cancels it,
    and cdb's MAP.tmp goes with the rest."""
    src = bulk_file(tmp_path, extra="user0@dom0.example carol@runbox.com\n")
    result = table.run(type="cdb", src=str(src), exclusive=True)
    assert result["pairs"] == 40001, result
    assert table.files() == ["senders", "senders.cdb"]
    assert table.query("user0@dom0.example", map_type="cdb") == {
        "user0@dom0.example": "carol@runbox.com,login0@runbox.com"
    }


def test_a_bad_line_deep_in_a_large_bulk_file_is_named_and_nothing_is_left(table, tmp_path):
    table.run(entries=entries(("a@runbox.com", ALICE)))
    before = table.path.read_bytes()
    src = bulk_file(tmp_path, extra="evil@runbox.com alice@runbox.com,bob@hosted.example\n")
    result = table.run(src=str(src), exclusive=True)
    assert result.get("failed") is True
    assert "line 40001" in result["msg"] and "comma" in result["msg"], result["msg"]
    assert table.path.read_bytes() == before
    assert table.files() == ["senders", "senders.lmdb"], "the early postmap left files behind"


def test_a_src_rewritten_with_its_old_size_and_mtime_is_still_read_again(table, tmp_path):
    src = tmp_path / "bulk.txt"
    src.write_text("a@runbox.com alice@runbox.com\n")
    table.run(src=str(src), exclusive=True)
    old = src.stat()
    src.write_text("b@runbox.com alice@runbox.com\n")  # same size
    os.utime(src, ns=(old.st_atime_ns, old.st_mtime_ns))  # and the old mtime; the ctime still moves
    result = table.run(src=str(src), exclusive=True)
    assert (result["changed"], result["added"], result["removed"]) == (True, 1, 1), result
    assert table.query("a@runbox.com", "b@runbox.com") == {"a@runbox.com": None, "b@runbox.com": ALICE}


@pytest.mark.parametrize(
    ("option", "backend_module", "backend"),
    [
        ("path", "table_file", "TableFileBackend"),
        ("store", "sqlite_store", "SqliteStoreBackend"),
        ("database", "postgresql", "DatabaseBackend"),
    ],
)
def test_each_option_selects_its_own_backend(option, backend_module, backend):
    """The module imports a backend only when its option is given (a no-op on a
    table file loads no database code): each of those imports must resolve,
    which only the molecule scenarios of that backend would otherwise show."""
    spec = importlib.util.spec_from_file_location("sender_allowlist_module", MODULE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    selected = module.backend_class(option)
    assert selected.__name__ == backend
    assert selected.__module__ == f"{BACKENDS_PACKAGE}.{backend_module}"
