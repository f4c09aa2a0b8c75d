"""The fleet's rules in Python: account entries checked before the database is
touched, the plan of a run, the connection strings, the queries, COPY's blocks."""

import hashlib
import re

import pytest
from ansible_collections.mailops.submission.plugins.module_utils.client_networks import host_networks
from ansible_collections.mailops.submission.plugins.module_utils.database_senders import _copy_blocks, count_after
from ansible_collections.mailops.submission.plugins.module_utils.dns_name import MAX_NAME_OCTETS, NAME_PATTERN
from ansible_collections.mailops.submission.plugins.module_utils.fleet_accounts import (
    Account,
    AccountError,
    fleet_account_entries,
    normalize_accounts,
    plan_accounts,
)
from ansible_collections.mailops.submission.plugins.module_utils.fleet_database import (
    fleet_conninfo,
    fleet_counter_store,
    fleet_database_settings,
    fleet_uri,
    pgpass_line,
)
from ansible_collections.mailops.submission.plugins.module_utils.fleet_schema import (
    MIGRATIONS,
    SENDER_ADDRESS_RE,
    password_query,
    sender_logins_query,
)
from ansible_collections.mailops.submission.plugins.module_utils.sender_address import AddressError, normalize_sender
from ansible_collections.mailops.submission.plugins.module_utils.store_senders import StorePlan
from ansible_collections.mailops.submission.plugins.module_utils.validated_store import MIGRATIONS as STORE_MIGRATIONS
from hypothesis import given, settings
from hypothesis import strategies as st

HASH = "$6$ZRqKrkOtCAsTz6bk$p0Hnj5DB1gCgVgEtQH5msOPkpjAznihmLC8PkHFO.QhffwA/xJ4X1u3.daH6FN8pElxxIbEsHBLCvrW1pN6nQ0"
SETTINGS = {"host": "db.fleet.test", "inventory_host": "fleet-db"}


def test_accounts_are_normalised_and_their_own_address_is_no_alias():
    [account] = normalize_accounts(
        [{"address": "Alice@Runbox.com", "password_hash": HASH, "aliases": ["ALICE@runbox.com", "a.s@runbox.com"]}]
    )
    assert account == Account("alice@runbox.com", HASH, frozenset({"a.s@runbox.com"}), frozenset())


@pytest.mark.parametrize(
    ("entry", "named"),
    [
        ({"address": "alice", "password_hash": HASH}, "'alice'"),
        ({"address": "alice@runbox.com", "password_hash": "alice-Test-pw1"}, "(alice@runbox.com)"),
        ({"address": "alice@runbox.com", "password_hash": "$1$salt$hash"}, "MD5-crypt"),
        ({"address": "alice@runbox.com", "password_hash": HASH, "aliases": ["@gmail.com"]}, "'@gmail.com'"),
        ({"address": "alice@runbox.com", "password_hash": HASH, "aliases": ["a b@runbox.com"]}, "'a b@runbox.com'"),
        ({"address": "alice@runbox.com", "password_hash": HASH, "domains": ["bad domain"]}, "'bad domain'"),
    ],
)
def test_a_bad_entry_is_refused_by_name_and_never_quotes_a_hash(entry, named):
    with pytest.raises(AccountError) as raised:
        normalize_accounts([entry])
    assert named in str(raised.value)
    assert "alice-Test-pw1" not in str(raised.value) and "$1$salt" not in str(raised.value)


def test_a_login_twice_or_a_domain_with_two_owners_is_refused():
    with pytest.raises(AccountError, match=r"accounts\[1\] \(alice@runbox.com\): listed already as accounts\[0\]"):
        normalize_accounts([{"address": "alice@runbox.com", "password_hash": HASH}] * 2)
    with pytest.raises(AccountError, match=r"domain hosted\.example is alice@runbox\.com's already"):
        normalize_accounts(
            [
                {"address": "alice@runbox.com", "password_hash": HASH, "domains": ["hosted.example"]},
                {"address": "bob@hosted.example", "password_hash": HASH, "domains": ["Hosted.Example"]},
            ]
        )


def test_the_plan_adds_updates_and_with_exclusive_removes():
    current = {
        "alice@runbox.com": Account("alice@runbox.com", HASH),
        "gone@runbox.com": Account("gone@runbox.com", HASH),
    }
    entries = normalize_accounts(
        [
            {"address": "alice@runbox.com", "password_hash": HASH, "aliases": ["a.s@runbox.com"]},
            {"address": "bob@hosted.example", "password_hash": HASH, "domains": ["hosted.example"]},
        ]
    )
    plan = plan_accounts(current, entries, exclusive=True)
    assert (plan.added, plan.updated, plan.removed) == (
        ["bob@hosted.example"],
        ["alice@runbox.com"],
        ["gone@runbox.com"],
    )
    before, after = plan.diff()
    assert "alice@runbox.com: alias a.s@runbox.com" in after and "gone@runbox.com: password set" in before
    assert HASH not in before + after
    kept = plan_accounts(current, entries, exclusive=False)
    assert kept.removed == [] and "gone@runbox.com" in kept.desired
    assert not plan_accounts(plan.desired, entries, exclusive=True).changed


def test_an_absent_account_is_removed():
    current = {"alice@runbox.com": Account("alice@runbox.com", HASH)}
    entries = normalize_accounts([{"address": "alice@runbox.com", "state": "absent"}])
    assert plan_accounts(current, entries, exclusive=False).removed == ["alice@runbox.com"]


def test_fleet_entries_leave_the_external_senders_to_the_allowlist():
    accounts = [{"address": "alice@runbox.com", "password_hash": HASH, "external_senders": ["x@gmail.example"]}]
    assert fleet_account_entries(accounts) == [
        {"address": "alice@runbox.com", "password_hash": HASH, "aliases": [], "domains": []}
    ]


def test_settings_get_their_defaults_and_a_bad_one_is_named():
    assert fleet_database_settings({}) == {}
    settings = fleet_database_settings(SETTINGS)
    assert settings["port"] == 5432 and settings["name"] == "submission"
    for bad, named in [
        ({"host": "db fleet", "inventory_host": "x"}, "'db fleet'"),
        ({"host": "db.fleet.test"}, "inventory_host"),
        (dict(SETTINGS, port="5432"), "'5432'"),
        (dict(SETTINGS, counter_port=0), "counter_port: 0"),
        (dict(SETTINGS, name="sub;mission"), "'sub;mission'"),
        (dict(SETTINGS, hots="x"), "['hots']"),
    ]:
        with pytest.raises(ValueError, match=None) as raised:
            fleet_database_settings(bad)
        assert named in str(raised.value)


def test_the_database_host_is_an_ip_address_or_a_dns_name_of_one_label_or_more_in_its_canonical_form():
    assert fleet_database_settings(dict(SETTINGS, host="DB.Fleet.Test"))["host"] == "db.fleet.test"
    assert fleet_database_settings(dict(SETTINGS, host="fleet-db"))["host"] == "fleet-db"
    assert fleet_database_settings(dict(SETTINGS, host="192.0.2.10"))["host"] == "192.0.2.10"
    assert fleet_database_settings(dict(SETTINGS, host="2001:DB8:0::5"))["host"] == "2001:db8::5"
    for address in ("192.0.2", "1234"):
        with pytest.raises(ValueError, match=rf"host: '{re.escape(address)}' is neither an IP address nor a host name"):
            fleet_database_settings(dict(SETTINGS, host=address))


def test_every_connection_verifies_the_server_and_keeps_its_password_out_of_the_string():
    conninfo = fleet_conninfo(SETTINGS, "submission_milter", "/etc/from-check/pgpass")
    assert "sslmode=verify-full" in conninfo and "passfile=/etc/from-check/pgpass" in conninfo
    assert "password" not in conninfo
    uri = fleet_uri(SETTINGS, "submission_postfix", "/etc/postfix/submission/pgpass")
    assert uri.startswith("postgresql://submission_postfix@db.fleet.test:5432/submission?sslmode=verify-full&")
    quoted = fleet_conninfo(SETTINGS, "submission_dovecot", "", "it's\\a-long-password")
    assert quoted.endswith("password='it\\'s\\\\a-long-password'")
    assert (
        pgpass_line(SETTINGS, "u", "a:b\\c-long-password")
        == "db.fleet.test:5432:submission:u:a\\:b\\\\c-long-password\n"
    )
    with pytest.raises(ValueError, match="at least 16"):
        pgpass_line(SETTINGS, "u", "short")


def test_the_counter_store_is_the_database_hosts_redis_over_tls_with_a_password_file():
    settings = dict(SETTINGS, host="DB.Fleet.Test")
    store = fleet_counter_store(settings, "milter", "/etc/f/pw", "/etc/f/c.crt", "/etc/f/c.key")
    assert store == {
        "host": "db.fleet.test",
        "port": 6380,
        "ca_file": "/etc/ssl/submission/fleet-database-ca.pem",
        "cert_file": "/etc/f/c.crt",
        "key_file": "/etc/f/c.key",
        "user": "milter",
        "password_file": "/etc/f/pw",
    }
    assert fleet_counter_store(dict(SETTINGS, counter_port=16380), "milter", "/p", "/c", "/k")["port"] == 16380


def test_the_queries_are_one_for_postfix_and_the_milter_and_dovecots_follows_the_login_rule():
    assert sender_logins_query("postfix") == "SELECT DISTINCT login FROM sender_logins WHERE sender = '%s'"
    assert sender_logins_query("pyformat").endswith("sender = %s")
    query = password_query("Runbox.com", "2.3")
    assert "'%u@runbox.com'" in query and "login AS user" in query
    assert "'%{user}@runbox.com'" in password_query("runbox.com", "2.4")
    with pytest.raises(ValueError, match=r"'runbox\.com; DROP'"):
        password_query("runbox.com; DROP", "2.3")
    # The domain as the accounts' logins hold it: A-labels.
    assert "'%u@xn--bcher-kva.example'" in password_query("Bücher.example", "2.3")
    with pytest.raises(ValueError, match="needs at least two labels"):
        password_query("localhost", "2.3")


def test_host_addresses_become_one_address_networks_and_a_missing_one_is_named():
    assert host_networks(["172.30.99.12", "2001:db8::1"]) == ["172.30.99.12/32", "2001:db8::1/128"]
    with pytest.raises(ValueError, match="'AnsibleUndefined'"):
        host_networks(["AnsibleUndefined"])


def test_copy_blocks_hold_every_row_and_refuse_what_copy_would_escape():
    rows = [(f"u{n}@gmail.example", "alice@runbox.com") for n in range(5)]
    blocks = _copy_blocks(rows, 7, size=2)
    assert "".join(blocks).splitlines() == [f"u{n}@gmail.example\talice@runbox.com\tinventory\t7" for n in range(5)]
    assert _copy_blocks([("a\\b@gmail.example", "alice@runbox.com")], 7) is None


class _Totals:
    def execute(self, _query):
        pass

    def fetchone(self):
        return (1000, 900)


def test_counts_after_a_partial_read_come_from_the_tables_totals():
    inventory = {("x@gmail.example", "alice@runbox.com")}
    plan = StorePlan(insert={("y@gmail.example", "alice@runbox.com")}, delete=set(inventory), pairs=0, keys=0)
    count_after(_Totals(), inventory, set(), plan)
    assert (plan.pairs, plan.keys) == (1000, 900)


# The fleet's migrations as they shipped: a database that has one never runs it
# again, so a change to one reaches no database that has it. Append instead.
SHIPPED = {
    100: "0d11c23de62d506439121900475f18a86475dafd72e7d14fb837128d2a1ad8f3",
    101: "f6b60d818b132fd5ac5159517bf64caeb809add023cc84d8d18e969b9ad7d536",
    102: "4236770aff56cd1b49b9722e9c01673a16f6c8376f460deca10fb8347d023e56",
    103: "e85eed0ab46bf6357a2db69b94503fd09d9d39149ecf14d3844deae77f35fbb1",
}


def test_shipped_migrations_are_never_edited_and_versions_only_grow():
    digests = {
        version: hashlib.sha256("\n".join(statements).encode()).hexdigest() for version, statements in MIGRATIONS
    }
    assert {version: digests[version] for version in SHIPPED} == SHIPPED
    versions = [version for version, _ in MIGRATIONS]
    assert versions == sorted(set(versions)) and versions[0] >= 100
    assert max(version for version, _ in STORE_MIGRATIONS) < 100


def _validated_senders_rules():
    [(_, statements)] = [migration for migration in MIGRATIONS if migration[0] == 101]
    return "\n".join(statements)


def test_the_view_skips_domain_keys_and_hosted_domains_and_a_new_hosted_domain_prunes_users_rows():
    """What migration 101 says, as the single host's map daemon does it (the
    fleet scenario checks it on PostgreSQL)."""
    rules = _validated_senders_rules()
    view = rules[rules.index("CREATE OR REPLACE VIEW sender_logins") :]
    validated_branch = view[view.index("FROM validated_senders") :]
    assert "WHERE v.sender NOT LIKE '@%' AND NOT hosted_domain(split_part(v.sender, '@', 2))" in validated_branch
    function = rules[rules.index("CREATE FUNCTION hosted_domain") :]
    assert "SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp" in function
    assert "EXISTS (SELECT 1 FROM account_domains WHERE domain = domain_name)" in function
    assert "EXISTS (SELECT 1 FROM accounts WHERE split_part(login, '@', 2) = domain_name)" in function
    assert "CHECK (sender NOT LIKE '@%')" in rules
    assert "CHECK (sender ~ '" + SENDER_ADDRESS_RE.replace("'", "''") + "'" in rules
    for table, column in (("account_domains", "domain"), ("accounts", "login")):
        assert re.search(rf"AFTER INSERT OR UPDATE OF {column} ON {table}\s+FOR EACH ROW", rules), table
    assert "DELETE FROM validated_senders WHERE source = 'user' AND split_part(sender, '@', 2) = hosted" in rules


def test_a_validated_senders_domain_is_a_name_by_the_one_rule():
    """Migration 103: the domain by dns_name.py's rule, whoever writes (the
    fleet scenario applies it to PostgreSQL)."""
    [(_, statements)] = [migration for migration in MIGRATIONS if migration[0] == 103]
    rule = f"split_part(sender, '@', 2) ~ '^{NAME_PATTERN}$' AND octet_length(split_part(sender, '@', 2)) <= 253"
    assert statements[0].split(" WHERE NOT ") == ["DELETE FROM validated_senders", f"({rule})"]
    # A request that would confirm such an address goes too (its confirmation would break the constraint).
    assert statements[1].split(" WHERE NOT ") == ["DELETE FROM validation_requests", f"({rule})"]
    assert "ADD CONSTRAINT validated_senders_domain_is_a_name" in statements[2]
    assert f"CHECK ({rule})" in statements[2]


def _shape_allows(value):
    """The CHECKs of migrations 101 and 103."""
    local, _, domain = value.partition("@")
    return (
        bool(re.fullmatch(SENDER_ADDRESS_RE, value))
        and len(local) <= 64
        and len(domain) <= 255
        and bool(re.fullmatch(NAME_PATTERN, domain))
        and len(domain) <= MAX_NAME_OCTETS
    )


@pytest.mark.parametrize(
    ("value", "allowed"),
    [
        ("alice.ext@gmail.example", True),
        ("o'brien+tag@xn--fa-hia.de", True),
        ("a{b}|c~=d@sub.gmail.example", True),
        ("@gmail.com", False),
        ("Alice@gmail.example", False),
        ("alice@localhost", False),
        ("#alice@gmail.example", False),
        ("a..b@gmail.example", False),
        ("a@b@gmail.example", False),
        ("a b@gmail.example", False),
        ("alice@-gmail.example", False),
        ("alice@gmail.example.", False),
        ("alice@192.0.2.1", False),
        ("alice@" + ".".join(["a" * 63] * 3) + "." + "b" * 61, True),
        ("alice@" + ".".join(["a" * 63] * 3) + "." + "b" * 62, False),
        ("a" * 65 + "@gmail.example", False),
    ],
)
def test_the_database_takes_a_validated_sender_of_an_addresss_shape_only(value, allowed):
    assert _shape_allows(value) is allowed


_ALPHABET = "abcXYZ019.+-_=#$&'*/?^`{|}~!%\"\\,:;()<>[]@ \tü"


@settings(max_examples=300, deadline=None)
@given(
    st.text(alphabet=_ALPHABET, max_size=40),
    st.lists(st.text(alphabet="abcQ09-_.ü", min_size=1, max_size=8), max_size=3),
)
def test_the_databases_shape_is_the_address_rules_own(local, labels):
    """Every address the rule gives (the validation service and the module write
    no other) passes the CHECK, and whatever passes is one the rule gives unchanged."""
    value = f"{local}@{'.'.join(labels)}"
    try:
        normal = normalize_sender(value)
    except AddressError:
        normal = None
    if normal is not None and not normal.startswith("@"):
        assert _shape_allows(normal), normal
    if _shape_allows(value):
        assert normal == value, value
