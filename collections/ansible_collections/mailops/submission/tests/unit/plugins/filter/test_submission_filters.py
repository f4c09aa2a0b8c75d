"""The filters the roles shape their data with, on the data the roles give them."""

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.mailops.submission.plugins.filter import submission as filter_plugin
from ansible_collections.mailops.submission.plugins.test import submission as test_plugin

FILTERS = filter_plugin.FilterModule().filters()
TESTS = test_plugin.TestModule().tests()

LISTENERS = [
    {"name": "smtp", "address": "127.0.0.1", "ports": [25]},
    {"name": "secure", "address": "127.0.0.2", "ports": [25]},
    {"name": "submit", "hostname": "smtp.example.org", "address": "127.0.0.3", "ports": [587]},
    {"name": "smtp2", "hostname": "smtp.example.org", "address": "127.0.0.4", "ports": [587]},
]


def test_a_listener_is_named_after_its_name_and_the_domain_unless_it_has_a_hostname():
    assert FILTERS["listener_hostname"](LISTENERS[0], "runbox.com") == "smtp.runbox.com"
    assert FILTERS["listener_hostname"](LISTENERS[2], "runbox.com") == "smtp.example.org"


def test_host_names_come_once_each_in_listener_order():
    assert FILTERS["listener_hostnames"](LISTENERS, "runbox.com") == [
        "smtp.runbox.com",
        "secure.runbox.com",
        "smtp.example.org",
    ]


def test_the_map_gives_each_listener_its_host_name():
    assert FILTERS["listener_hostname_map"](LISTENERS, "runbox.com") == {
        "smtp": "smtp.runbox.com",
        "secure": "secure.runbox.com",
        "submit": "smtp.example.org",
        "smtp2": "smtp.example.org",
    }


def test_each_name_has_a_chain_file_per_key_type():
    assert FILTERS["chain_files"](["a.example", "b.example"], "/etc/chains/", ["ecdsa", "rsa"]) == {
        "a.example": ["/etc/chains/a.example.ecdsa.pem", "/etc/chains/a.example.rsa.pem"],
        "b.example": ["/etc/chains/b.example.ecdsa.pem", "/etc/chains/b.example.rsa.pem"],
    }


def test_a_listener_without_a_name_is_a_filter_error_not_a_traceback():
    with pytest.raises(AnsibleFilterError, match="listener_hostname: KeyError"):
        FILTERS["listener_hostname"]({"address": "127.0.0.1"}, "runbox.com")


ACCOUNTS = [
    {"address": "Alice@runbox.com", "password_hash": "$6$s$h", "aliases": ["a.smith@runbox.com"]},
    {
        "address": "bob@hosted.example",
        "password_hash": "{SHA512-CRYPT}$6$s$h",
        "domains": ["hosted.example"],
        "external_senders": ["bob.home@gmail.example"],
    },
]


def test_account_entries_give_address_aliases_and_domains_to_the_lower_case_login():
    assert FILTERS["allowlist_account_entries"](ACCOUNTS) == [
        {"sender": "Alice@runbox.com", "login": "alice@runbox.com"},
        {"sender": "a.smith@runbox.com", "login": "alice@runbox.com"},
        {"sender": "bob@hosted.example", "login": "bob@hosted.example"},
        {"sender": "@hosted.example", "login": "bob@hosted.example"},
    ]


def test_validated_entries_are_the_external_senders():
    assert FILTERS["allowlist_validated_entries"](ACCOUNTS) == [
        {"sender": "bob.home@gmail.example", "login": "bob@hosted.example"}
    ]


def test_good_accounts_have_no_problems():
    assert FILTERS["account_problems"](ACCOUNTS) == []


@pytest.mark.parametrize(
    ("account", "problem"),
    [
        ({"address": "a..b@runbox.com", "password_hash": "$6$s$h"}, "a..b@runbox.com: the address is not a login"),
        ({"address": "carol", "password_hash": "$6$s$h"}, "carol: the address is not a login"),
        ({"password_hash": "$6$s$h"}, "account #1: the address is not a login"),
        ({"address": "carol@runbox.com"}, "carol@runbox.com: password_hash must be a crypt hash"),
        ({"address": "carol@runbox.com", "password_hash": "{PLAIN}secret"}, "carol@runbox.com: password_hash"),
        (
            {"address": "carol@runbox.com", "password_hash": "$6$s$h", "password": "Sekr1t-pw"},
            "carol@runbox.com: a clear-text password",
        ),
    ],
)
def test_each_problem_names_the_account_and_never_its_secret(account, problem):
    problems = FILTERS["account_problems"]([account])
    assert len(problems) == 1, problems
    assert problems[0].startswith(problem), problems
    assert "Sekr1t-pw" not in problems[0]
    assert "secret" not in problems[0]


# What each refused scheme looks like, and the word the refusal names it by.
WEAK_HASHES = [
    ("$1$saltsalt$Vx0mIvKgZ9Tw0rGnvb.9e1", "MD5-crypt"),
    ("{CRYPT}$1$saltsalt$Vx0mIvKgZ9Tw0rGnvb.9e1", "MD5-crypt"),
    ("$apr1$saltsalt$Vx0mIvKgZ9Tw0rGnvb.9e1", "Apache MD5"),
    ("saHW9GdxihkGQ", "DES crypt"),
    ("{CRYPT}saHW9GdxihkGQ", "DES crypt"),
    ("{PLAIN}Sekr1t-pw", "PLAIN"),
    ("{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=", "SHA"),
    ("{SSHA256}czO44OTV17PcF1cRxWrLZLy9xHd7CWyVYplr1rOhuzkY2SNt", "SSHA256"),
    ("{PLAIN-MD5}5f4dcc3b5aa765d61d8327deb882cf99", "PLAIN-MD5"),
    ("{SHA512-CRYPT}$5$saltsalt$ZYpUqP7hGnHHxGJC3SYpuVt6aQcKkFfbnLiH8zMqmC4", "marked {SHA512-CRYPT}"),
    ("$6$saltsalt$hash:with:colons", "not a $id$ crypt hash"),
]


@pytest.mark.parametrize(("password_hash", "named"), WEAK_HASHES)
def test_weak_or_broken_hashes_are_refused_by_their_scheme_never_their_value(password_hash, named):
    problems = FILTERS["account_problems"]([{"address": "carol@runbox.com", "password_hash": password_hash}])
    assert len(problems) == 1 and problems[0].startswith("carol@runbox.com: "), problems
    assert named in problems[0], problems
    assert password_hash not in problems[0] and "Sekr1t-pw" not in problems[0]


@pytest.mark.parametrize(
    "password_hash",
    [
        "{SHA512-CRYPT}$6$ZRqKrkOtCAsTz6bk$p0Hnj5DB1gCgVgEtQH5msOPkpjAznihmLC8PkHFO",
        "$6$rounds=100000$ZRqKrkOtCAsTz6bk$p0Hnj5DB1gCgVgEtQH5msOPkpjAznihmLC8PkHFO",
        "{SHA256-CRYPT}$5$saltsalt$ZYpUqP7hGnHHxGJC3SYpuVt6aQcKkFfbnLiH8zMqmC4",
        "{BLF-CRYPT}$2y$05$abcdefghijklmnopqrstuu5sFGmGqAYmhRfXnp3zRQGRsI1eDdbAe",
        "$y$j9T$F5Jx5fExrKuPp53xLKQ..1$X3DX6M94c7o.9agCG9G317fhZg9SqC.5i5rd.RhAtQ7",
        "{CRYPT}$y$j9T$F5Jx5fExrKuPp53xLKQ..1$X3DX6M94c7o.9agCG9G317fhZg9SqC.5i5rd.RhAtQ7",
        "{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$c2FsdHNhbHQ$Mdg0Wk0sc3Vd8tFz",
    ],
)
def test_slow_salted_hashes_are_accepted(password_hash):
    assert FILTERS["account_problems"]([{"address": "carol@runbox.com", "password_hash": password_hash}]) == []


def test_an_address_listed_twice_in_any_case_is_a_problem():
    accounts = [{"address": "dup@runbox.com", "password_hash": "$6$s$h"}] * 2
    accounts += [{"address": "DUP@runbox.com", "password_hash": "$6$s$h"}]
    assert FILTERS["account_problems"](accounts) == ["dup@runbox.com: listed 3 times"]


@pytest.mark.parametrize(
    ("value", "login", "sender"),
    [
        ("alice@runbox.com", True, True),
        ("Alice@Runbox.COM", True, True),
        ("@gmail.example", False, True),
        ("a..b@runbox.com", False, False),
        ("alice", False, False),
        ("alice%runbox.com@runbox.com", False, False),
        (42, False, False),
    ],
)
def test_address_tests_follow_the_modules_rules(value, login, sender):
    assert TESTS["login_address"](value) is login
    assert TESTS["sender_address"](value) is sender


SUPPLIED = (
    [["DNS:smtp.example.net"], ["DNS:*.example.net"], ["DNS:*.example.net", "DNS:other.example"], None],
    ["RSA", "ECC", "RSA", "ECC"],
)


def test_each_name_and_key_type_gets_the_first_certificate_of_its_type_that_covers_it():
    matches = FILTERS["certificate_matches"](["smtp.example.net", "secure.example.net"], ["ecdsa", "rsa"], *SUPPLIED)
    assert matches == [
        {"name": "smtp.example.net", "type": "ecdsa", "index": 1},
        {"name": "smtp.example.net", "type": "rsa", "index": 0},
        {"name": "secure.example.net", "type": "ecdsa", "index": 1},
        {"name": "secure.example.net", "type": "rsa", "index": 2},
    ]


@pytest.mark.parametrize("name", ["a.b.example.net", "example.net", "smtp.example.org", "smtp"])
def test_a_wildcard_covers_one_label_only(name):
    matches = FILTERS["certificate_matches"]([name], ["ecdsa"], [["DNS:*.example.net"]], ["ECC"])
    assert matches == [{"name": name, "type": "ecdsa", "index": None}]


def test_good_listeners_have_no_problem():
    assert FILTERS["listener_problems"](LISTENERS) == []
    ipv6 = {"name": "v6", "address": "::1", "ports": ["587"], "implicit_tls_ports": [465]}
    assert FILTERS["listener_problems"]([ipv6]) == []


@pytest.mark.parametrize(
    ("listener", "problem"),
    [
        ({"name": "Smtp", "address": "127.0.0.1", "ports": [25]}, "listener 'Smtp': the name must be"),
        ({"address": "127.0.0.1", "ports": [25]}, "listener #1: the name must be"),
        ({"name": "smtp", "address": "smtp.runbox.com", "ports": [25]}, "address 'smtp.runbox.com' is not an IP"),
        ({"name": "smtp", "address": "127.0.0.1", "ports": []}, "listener 'smtp': no ports"),
        ({"name": "smtp", "address": "127.0.0.1", "ports": [0]}, "port 0 is not in 1-65535"),
        ({"name": "smtp", "address": "127.0.0.1", "ports": [25], "implicit_tls_ports": [70000]}, "port 70000"),
        ({"name": "smtp", "address": "127.0.0.1", "ports": [True]}, "port True is not"),
    ],
)
def test_a_bad_listener_is_named_with_its_bad_value(listener, problem):
    problems = FILTERS["listener_problems"]([listener])
    assert len(problems) == 1 and problem in problems[0], problems


def test_an_address_and_port_bound_twice_is_named():
    twice = [*LISTENERS[:2], {"name": "again", "address": "127.0.0.1", "ports": [587, 25]}]
    assert FILTERS["listener_problems"](twice) == ["127.0.0.1:25 is bound by two listeners"]
    assert FILTERS["listener_problems"]([]) == ["no listener: submission_common_listeners must hold at least one"]


def test_served_listeners_give_what_a_mail_client_needs():
    listeners = [
        {"name": "smtp", "address": "127.0.0.1", "ports": [25, "587"]},
        {"name": "secure", "address": "127.0.0.2", "ports": [25], "implicit_tls_ports": [465], "tls": "required"},
    ]
    assert FILTERS["served_listeners"](listeners, "runbox.com") == [
        {"hostname": "smtp.runbox.com", "ports": [25, 587], "implicit_tls_ports": [], "tls": "starttls"},
        {"hostname": "secure.runbox.com", "ports": [25], "implicit_tls_ports": [465], "tls": "required"},
    ]


def test_hosted_domains_are_the_primary_the_accounts_and_their_domains():
    accounts = [{"address": "Alice@RunBox.com"}, {"address": "bob@hosted.example", "domains": ["Other.Example"]}]
    assert FILTERS["hosted_domains"](accounts, "runbox.com") == ["hosted.example", "other.example", "runbox.com"]


def test_a_container_guest_is_told_from_a_machine_or_a_virtual_machine():
    assert TESTS["container_host"]({"virtualization_role": "guest", "virtualization_type": "docker"})
    assert TESTS["container_host"]({"virtualization_role": "guest", "virtualization_type": "systemd-nspawn"})
    assert not TESTS["container_host"]({"virtualization_role": "guest", "virtualization_type": "kvm"})
    assert not TESTS["container_host"]({"virtualization_role": "host", "virtualization_type": "docker"})
    assert not TESTS["container_host"]({})
