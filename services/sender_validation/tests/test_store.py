"""The store: requests, confirmations, refusals, and what Postfix reads from it."""

import re
import sqlite3
import subprocess
import time

import psycopg
import pytest
from ansible_collections.mailops.submission.plugins.module_utils.validated_store import store_query
from ansible_collections.mailops.submission.tests.unit.plugins.modules.allowlist_harness import POSTMAP
from sender_validation.store import MIGRATIONS, STATEMENTS, PgStore, SqliteStore, Store, open_store, token_digest

ALICE, BOB = "alice@runbox.com", "bob@hosted.example"
NEW = "alice.new@gmail.example"
DAY = 86400
# The test runs on a SqliteStore, then on a PgStore (the fleet's schema, a real server).
each_backend = pytest.mark.parametrize("store", ["sqlite", "postgresql"], indirect=True)


def test_migrations_run_once_and_record_their_version(tmp_path):
    path = str(tmp_path / "s.sqlite")
    first = Store(path)
    assert first.migrate() == [version for version, _ in MIGRATIONS]
    assert first.schema_version() == MIGRATIONS[-1][0]
    first.close()
    again = Store(path)
    assert again.migrate() == []
    assert again.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    again.close()


@each_backend
def test_a_confirmed_request_validates_the_sender_for_that_login_only(store):
    token = store.request(NEW, ALICE, "192.0.2.1", now=1000, ttl=DAY)
    assert store.senders(ALICE, now=1001) == ([], [NEW])
    assert store.confirm(token, BOB, now=1002) is None, "another login's session must not confirm"
    assert store.confirm(token, ALICE, now=1003) == NEW
    assert store.senders(ALICE, now=1004) == ([NEW], [])
    assert store.senders(BOB, now=1004) == ([], [])


def test_a_token_is_stored_only_as_its_hash(store, tmp_path):
    token = store.request(NEW, ALICE, "192.0.2.1", now=1000, ttl=DAY)
    assert len(token) >= 43, "at least 256 bits of randomness, base64"
    raw = (tmp_path / "senders.sqlite").read_bytes() + (tmp_path / "senders.sqlite-wal").read_bytes()
    assert token.encode() not in raw
    assert token_digest(token).encode() in raw


@pytest.mark.parametrize("case", ["reused", "expired", "replaced", "altered"])
@each_backend
def test_a_token_that_is_not_open_validates_nothing(store, case):
    token = store.request(NEW, ALICE, "192.0.2.1", now=1000, ttl=DAY)
    now = 2000
    if case == "reused":
        assert store.confirm(token, ALICE, now=1500) == NEW
        store.remove(NEW, ALICE)
    elif case == "expired":
        now = 1000 + DAY
    elif case == "replaced":
        store.request(NEW, ALICE, "192.0.2.1", now=1500, ttl=DAY)
    else:
        token = token[:-1] + ("A" if token[-1] != "A" else "B")
    assert store.confirm(token, ALICE, now=now) is None
    assert NEW not in store.senders(ALICE, now=now)[0]


@each_backend
def test_this_was_not_me_cancels_and_blocks_for_the_period(store):
    token = store.request(NEW, ALICE, "192.0.2.1", now=1000, ttl=DAY)
    refused = store.refuse(token, now=1100, block_for=30 * DAY)
    assert refused.sender == NEW and refused.login == ALICE
    assert store.confirm(token, ALICE, now=1200) is None
    assert store.blocked(NEW, ALICE, now=1100 + 30 * DAY - 1)
    assert not store.blocked(NEW, ALICE, now=1100 + 30 * DAY)
    assert not store.blocked(NEW, BOB, now=1200)


@each_backend
def test_remove_takes_a_validated_sender_or_a_pending_request(store):
    token = store.request(NEW, ALICE, "192.0.2.1", now=1000, ttl=DAY)
    store.confirm(token, ALICE, now=1001)
    store.request("other@gmail.example", ALICE, "192.0.2.1", now=1002, ttl=DAY)
    assert store.remove(NEW, ALICE) and store.remove("other@gmail.example", ALICE)
    assert not store.remove(NEW, ALICE)
    assert store.senders(ALICE, now=1003) == ([], [])


@each_backend
def test_a_failed_transaction_leaves_nothing(store):
    store.request(NEW, ALICE, "192.0.2.1", now=1000, ttl=DAY)
    with pytest.raises((sqlite3.IntegrityError, psycopg.IntegrityError)), store.transaction():
        store.db.execute("DELETE FROM validation_requests")
        store.db.execute("INSERT INTO validated_senders VALUES ('x@y.example', 'alice@runbox.com', 'nobody', 1)")
    assert store.senders(ALICE, now=1001) == ([], [NEW])


@each_backend
def test_an_operation_inside_a_transaction_is_part_of_it(store):
    """remove() inside an outer transaction neither commits nor begins: the outer's rollback takes it back."""
    store.request(NEW, ALICE, "192.0.2.1", now=1000, ttl=DAY)
    with pytest.raises(RuntimeError), store.transaction():
        assert store.remove(NEW, ALICE)
        raise RuntimeError("after the remove")
    assert store.senders(ALICE, now=1001) == ([], [NEW])


def test_each_store_class_runs_the_statements_in_its_drivers_own_placeholders():
    """The statements are written once ({name}) and rendered when each class is
    defined: sqlite3's :name, psycopg's %(name)s; nothing else of the text differs."""
    assert SqliteStore.sql.drop_request == "DELETE FROM validation_requests WHERE sender = :sender AND login = :login"
    assert PgStore.sql.drop_request == "DELETE FROM validation_requests WHERE sender = %(sender)s AND login = %(login)s"
    assert Store is SqliteStore
    for key, text in STATEMENTS.items():
        assert re.sub(r":(\w+)", r"{\1}", getattr(SqliteStore.sql, key)) == text, key
        assert re.sub(r"%\((\w+)\)s", r"{\1}", getattr(PgStore.sql, key)) == text, key


@pytest.mark.parametrize(
    ("spec", "kind"),
    [
        ("/var/lib/sender-validation/senders.sqlite", SqliteStore),
        ("postgresql://submission_validation@db.fleet.test/submission?sslmode=verify-full", PgStore),
        ("postgres://db.fleet.test/submission", PgStore),
        ("host=db.fleet.test dbname=submission user=submission_validation", PgStore),
    ],
)
def test_open_store_takes_a_connection_string_for_postgresql_and_anything_else_for_a_sqlite_file(spec, kind):
    opened = open_store(spec)
    assert type(opened) is kind and opened.path == spec
    opened.close()


def test_a_sqlite_write_waits_for_another_writer_up_to_the_busy_timeout(store):
    """BEGIN IMMEDIATE takes the one write lock; another store's write waits for it
    (SQLite's busy timeout) and then fails, as sqlite3 reports a held lock."""
    other = SqliteStore(store.path, timeout=0.3)
    with store.transaction():
        store.log_request(NEW, ALICE, now=1000)
        started = time.monotonic()
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            other.log_request(NEW, BOB, now=1000)
        assert time.monotonic() - started >= 0.3
    other.log_request(NEW, BOB, now=1001)
    assert store.requests_for_sender(NEW, since=0) == 2
    other.close()


def test_postfix_reads_a_confirmation_at_once(store, tmp_path, postfix_config):
    assert POSTMAP, "Postfix's postmap is not installed (scripts/bootstrap.sh installs postfix-sqlite)"
    config = postfix_config
    table = tmp_path / "validated.cf"
    table.write_text(f"dbpath = {store.path}\nquery = {store_query('sqlite')}\n")

    def lookup(key):
        found = subprocess.run(
            [POSTMAP, "-c", str(config), "-q", key, f"sqlite:{table}"], capture_output=True, text=True, check=False
        )
        # postmap exits 1 both for "not found" and for a fatal error.
        assert found.returncode in (0, 1) and not found.stderr, found.stderr
        return found.stdout.strip() or None

    assert lookup(NEW) is None
    store.confirm(store.request(NEW, ALICE, "192.0.2.1", now=1000, ttl=DAY), ALICE, now=1001)
    store.confirm(store.request(NEW, BOB, "192.0.2.2", now=1000, ttl=DAY), BOB, now=1001)
    assert sorted(lookup(NEW).split(",")) == [ALICE, BOB]
    store.remove(NEW, BOB)
    assert lookup(NEW) == ALICE
