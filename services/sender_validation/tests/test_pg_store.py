"""The PostgreSQL store on a real server: what it does when its connection is
lost (a database restart), its schema check, and close()."""

import threading

import psycopg
import pytest
from sender_validation.store import MIGRATIONS

ALICE, BOB = "alice@runbox.com", "bob@hosted.example"
NEW = "alice.new@gmail.example"
DAY = 86400


def test_a_read_that_finds_the_connection_lost_runs_again_on_a_new_one(pg_store, postgresql):
    token = pg_store.request(NEW, ALICE, "192.0.2.1", now=1000, ttl=DAY)
    lost = pg_store.db.info.backend_pid
    postgresql.terminate(lost)
    assert pg_store.find_request(token).sender == NEW
    assert pg_store.db.info.backend_pid != lost


def test_a_transaction_that_finds_the_connection_lost_begins_again_on_a_new_one(pg_store, postgresql):
    postgresql.terminate(pg_store.db.info.backend_pid)
    token = pg_store.request(NEW, ALICE, "192.0.2.1", now=1000, ttl=DAY)
    assert pg_store.confirm(token, ALICE, now=1001) == NEW


def test_a_connection_lost_inside_a_transaction_fails_it_whole_and_the_next_call_reconnects(pg_store, postgresql):
    """A write inside a transaction is not run again: the error is the caller's,
    the transaction's writes are gone with it, and the store carries on."""
    with pytest.raises(psycopg.OperationalError), pg_store.transaction():
        pg_store.log_request(NEW, ALICE, now=1000)
        postgresql.terminate(pg_store.db.info.backend_pid)
        pg_store.log_request(NEW, BOB, now=1000)
    assert pg_store.requests_for_sender(NEW, since=0) == 0
    pg_store.log_request(NEW, ALICE, now=1001)
    assert pg_store.requests_for_sender(NEW, since=0) == 1


def test_every_thread_carries_on_after_the_database_restarts(pg_store, postgresql):
    token = pg_store.request(NEW, ALICE, "192.0.2.1", now=1000, ttl=DAY)
    connected, restarted, answers = threading.Event(), threading.Event(), []

    def other_thread():
        answers.append(pg_store.session_login("no-such-session", now=1000))  # its connection, before
        connected.set()
        restarted.wait(timeout=30)
        answers.append(pg_store.find_request(token).sender)

    thread = threading.Thread(target=other_thread)
    thread.start()
    assert connected.wait(timeout=30)
    postgresql.pg_ctl("restart")
    restarted.set()
    thread.join(timeout=30)
    assert answers == [None, NEW]
    assert pg_store.confirm(token, ALICE, now=1001) == NEW
    assert pg_store.senders(ALICE, now=1002) == ([NEW], [])


def test_close_closes_each_threads_connection_the_reopened_ones_included(pg_store, postgresql):
    first = pg_store.db
    postgresql.terminate(first.info.backend_pid)
    pg_store.senders(ALICE, now=1000)
    reopened, other = pg_store.db, []
    thread = threading.Thread(target=lambda: other.append(pg_store.db))
    thread.start()
    thread.join(timeout=30)
    assert reopened is not first and other[0] is not reopened
    pg_store.close()
    assert first.closed and reopened.closed and other[0].closed


def test_migrate_checks_the_schema_that_ansible_applies(pg_store):
    latest = MIGRATIONS[-1][0]
    assert pg_store.migrate() == []
    assert pg_store.schema_version() == latest
    pg_store.db.execute("DELETE FROM schema_version WHERE version = %s", (latest,))
    with pytest.raises(RuntimeError, match=rf"lacks the store's migrations \[{latest}\]"):
        pg_store.migrate()
