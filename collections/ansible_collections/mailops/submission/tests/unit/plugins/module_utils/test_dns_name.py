"""The one DNS-name rule (dns_name.py), its regular expression, and the Jinja
test the roles ask it through."""

import re

import pytest
from ansible_collections.mailops.submission.plugins.module_utils.dns_name import (
    MAX_NAME_OCTETS,
    NAME_PATTERN,
    DnsNameError,
    dns_name,
    is_dns_name,
)
from ansible_collections.mailops.submission.plugins.test import submission as test_plugin
from hypothesis import given
from hypothesis import strategies as st

TESTS = test_plugin.TestModule().tests()


class Refused(str):
    """An expected refusal: the words its reason holds."""


LONG_NAME = ".".join(["a" * 63] * 3) + "." + "b" * 61  # 253 octets

# Four copies of the rule came before it. "old" says which of them accepted
# the value: s, sender_address (a key's or login's domain, normalised); p,
# fleet_schema.password_query (the primary domain, lower-cased); d,
# fleet_database (the database host, as given); t, submission_tls's assert on
# its names (lower case only). Then what the rule says now, of a name of two
# labels or more and of a host name that may be one label.
CASES = [
    # (value, old, two labels or more, single_label=True)
    ("smtp.example.net", "spdt", "smtp.example.net", "smtp.example.net"),
    ("SMTP.Example.NET", "spd-", "smtp.example.net", "smtp.example.net"),
    ("bücher.example", "s---", "xn--bcher-kva.example", "xn--bcher-kva.example"),
    ("faß.de", "s---", "xn--fa-hia.de", "xn--fa-hia.de"),
    ("xn--bcher-kva.example", "spdt", "xn--bcher-kva.example", "xn--bcher-kva.example"),
    ("x.xn--p1ai", "spd-", "x.xn--p1ai", "x.xn--p1ai"),
    ("smtp.example.x", "spd-", "smtp.example.x", "smtp.example.x"),
    ("1-2.example.a1", "spd-", "1-2.example.a1", "1-2.example.a1"),
    ("ab--cd.example", "spdt", "ab--cd.example", "ab--cd.example"),
    ("db1", "--d-", Refused("at least two labels"), "db1"),
    ("localhost", "--d-", Refused("at least two labels"), "localhost"),
    ("192.0.2.1", "spd-", Refused("digits only"), Refused("digits only")),
    ("10.1", "spd-", Refused("digits only"), Refused("digits only")),
    ("example.123", "spd-", Refused("digits only"), Refused("digits only")),
    ("1234", "--d-", Refused("at least two labels"), Refused("digits only")),
    ("a" * 63 + ".example", "spdt", "a" * 63 + ".example", "a" * 63 + ".example"),
    ("a" * 64 + ".example", "----", Refused("longer than 63 octets"), Refused("longer than 63 octets")),
    (LONG_NAME, "spdt", LONG_NAME, LONG_NAME),
    (LONG_NAME + "b", "spd-", Refused("longer than 253 octets"), Refused("longer than 253 octets")),
    (".".join(["a" * 63] * 4) + ".ex", "-pd-", Refused("longer than 253"), Refused("longer than 253")),
    ("a.b.", "----", Refused("trailing dot"), Refused("trailing dot")),
    ("a..b", "----", Refused("empty label"), Refused("empty label")),
    (".a.b", "----", Refused("empty label"), Refused("empty label")),
    ("-a.b", "----", Refused("outside letters"), Refused("outside letters")),
    ("a.b-", "----", Refused("outside letters"), Refused("outside letters")),
    ("a_b.example", "----", Refused("outside letters"), Refused("outside letters")),
    ("*.example.net", "----", Refused("outside letters"), Refused("outside letters")),
    ("db fleet", "----", Refused("outside letters"), Refused("outside letters")),
    ("bü cher.example", "----", Refused("not a valid IDN label"), Refused("not a valid IDN label")),
    ("", "----", Refused("is empty"), Refused("is empty")),
    (5, "----", Refused("not a string"), Refused("not a string")),
]


def _outcome(value, single_label):
    try:
        return dns_name(value, single_label=single_label)
    except DnsNameError as exc:
        assert repr(value) in str(exc), "the message names the value"
        return Refused(exc.reason)


@pytest.mark.parametrize(("value", "old", "names", "host_names"), CASES)
def test_the_rule_gives_the_canonical_name_or_says_why_not(value, old, names, host_names):
    for single_label, expected in ((False, names), (True, host_names)):
        outcome = _outcome(value, single_label)
        if isinstance(expected, Refused):
            assert isinstance(outcome, Refused) and expected in outcome, (single_label, outcome)
        else:
            assert outcome == expected and not isinstance(outcome, Refused), (single_label, outcome)


@pytest.mark.parametrize(
    ("value", "single_label", "holds"),
    [
        ("smtp.example.net", False, True),
        ("xn--bcher-kva.example", False, True),
        ("x.xn--p1ai", False, True),
        # Not as written: the test wants the canonical form, which a certificate
        # and a file name hold.
        ("SMTP.example.net", False, False),
        ("bücher.example", False, False),
        ("db1", False, False),
        ("db1", True, True),
        ("1234", True, False),
        ("192.0.2.1", False, False),
        ("smtp.example.net.", False, False),
        ("*.example.net", False, False),
        (None, False, False),
        (["smtp.example.net"], False, False),
    ],
)
def test_the_jinja_test_holds_for_canonical_names_only(value, single_label, holds):
    assert is_dns_name(value, single_label=single_label) is holds
    assert TESTS["dns_name"](value, single_label=single_label) is holds
    if not single_label:
        assert TESTS["dns_name"](value) is holds


@given(st.text(alphabet="az09-.", max_size=20) | st.builds(lambda n: "a." * n + "b", st.integers(100, 130)))
def test_the_regular_expression_says_what_the_rule_says(value):
    """sender_address's one-pass checks and the fleet database's CHECK use
    NAME_PATTERN: on canonical text it must agree with the rule."""
    by_pattern = re.fullmatch(NAME_PATTERN, value) is not None and len(value) <= MAX_NAME_OCTETS
    assert by_pattern is is_dns_name(value), value


@pytest.mark.parametrize(
    ("value", "holds"),
    [
        ("10.0.0.5", True),
        ("2001:db8::5", True),
        ("2001:DB8::5", False),  # not as a certificate's IP name and libpq write it
        ("2001:db8:0::5", False),
        ("10.0.0", False),
        ("db.fleet.test", False),
        ("", False),
        (None, False),
        (5, False),
    ],
)
def test_the_ip_address_test_holds_for_canonical_addresses_only(value, holds):
    assert TESTS["ip_address"](value) is holds
