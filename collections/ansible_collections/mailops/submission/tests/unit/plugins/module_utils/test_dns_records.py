"""The records a deployment needs, and how a published zone is judged against them."""

import pytest
from ansible_collections.mailops.submission.plugins.module_utils.dns_records import (
    DmarcError,
    expected_records,
    parse_dmarc,
    problems,
    zones,
)

KEYS = [
    {"domain": "runbox.com", "selector": "rsa1", "algorithm": "rsa-sha256", "public": "A" * 392, "state": "active"},
    {"domain": "runbox.com", "selector": "ed1", "algorithm": "ed25519-sha256", "public": "QUJD", "state": "active"},
    {"domain": "hosted.example", "selector": "rsa1", "algorithm": "rsa-sha256", "public": "B" * 8, "state": "pending"},
]
DMARC = {"policy": "none", "report_address": "dmarc@runbox.com"}


def records():
    mtas = {"addresses": ["192.0.2.25", "2001:db8::25"], "helo_names": ["smtp.runbox.com"]}
    return expected_records("runbox.com", ["hosted.example"], KEYS, mtas, DMARC)


def published(found):
    """A zone as a resolver answers it: records found -> lookup(name, type)."""
    table = {}
    for record in found:
        table.setdefault((record.name, record.type), []).append(record.value)
    return lambda name, kind: table.get((name, kind), [])


def test_the_records_of_a_provider_and_a_hosted_domain():
    by_name = {(r.name, r.type): r.value for r in records()}
    assert by_name[("_spf.runbox.com", "TXT")] == "v=spf1 ip4:192.0.2.25 ip6:2001:db8::25 -all"
    assert by_name[("hosted.example", "TXT")] == "v=spf1 include:_spf.runbox.com ~all"
    assert by_name[("smtp.runbox.com", "TXT")] == "v=spf1 include:_spf.runbox.com -all"
    assert by_name[("_dmarc.hosted.example", "TXT")].startswith("v=DMARC1; p=none; rua=mailto:dmarc@runbox.com")
    assert by_name[("hosted.example._report._dmarc.runbox.com", "TXT")] == "v=DMARC1"
    assert ("runbox.com._report._dmarc.runbox.com", "TXT") not in by_name
    assert by_name[("rsa1._domainkey.hosted.example", "CNAME")] == "rsa1.hosted.example._domainkey.runbox.com"
    # Every slot of each algorithm in use, before any key is in it: the domain's owner publishes once.
    cnames = sorted(r.name for r in records() if r.type == "CNAME")
    assert cnames == [f"{slot}._domainkey.hosted.example" for slot in ("ed1", "ed2", "rsa1", "rsa2")]
    assert by_name[("rsa1.hosted.example._domainkey.runbox.com", "TXT")] == "v=DKIM1; k=rsa; p=BBBBBBBB"
    lines = zones(records(), "runbox.com", ["hosted.example"])
    assert set(lines) == {"runbox.com", "hosted.example"}
    rsa = next(line for line in lines["runbox.com"] if line.startswith("rsa1._domainkey.runbox.com."))
    # A long key: one record of 255-octet strings.
    assert rsa.count('"') == 4 and '" "' in rsa


def test_a_zone_holding_every_record_has_no_problem_and_each_gap_is_named():
    expected = records()
    assert problems(expected, published(expected)) == []
    without = [r for r in expected if r.name != "rsa1._domainkey.hosted.example"]
    assert problems(expected, published(without)) == [
        "missing: CNAME rsa1._domainkey.hosted.example -> rsa1.hosted.example._domainkey.runbox.com (found [])"
    ]
    other_key = "v=DKIM1; k=ed25519; p=WFla"
    swapped = [
        r if r.name != "ed1._domainkey.runbox.com" else type(r)(r.name, r.type, other_key, r.purpose) for r in expected
    ]
    assert [p.split(":")[0] for p in problems(expected, published(swapped))] == ["wrong key"]


def test_spf_and_dmarc_are_judged_by_meaning_not_text():
    expected = [r for r in records() if r.name in ("runbox.com", "_dmarc.runbox.com")]
    lookup = {
        ("runbox.com", "TXT"): ["google-site-verification=x", "v=spf1 mx include:_spf.runbox.com include:other ~all"],
        ("_dmarc.runbox.com", "TXT"): ["v=DMARC1;p=reject;rua=mailto:x@y.example"],
    }
    assert problems(expected, lambda name, kind: lookup.get((name, kind), [])) == []
    lookup[("runbox.com", "TXT")].append("v=spf1 -all")
    lookup[("_dmarc.runbox.com", "TXT")] = ["v=DMARC1; p=maybe"]
    found = problems(expected, lambda name, kind: lookup.get((name, kind), []))
    assert [p.split(":")[0] for p in found] == ["more than one SPF record", "unreadable"]


def test_a_resolver_that_does_not_answer_is_not_a_missing_record():
    def silent(name, kind):
        raise LookupError("timeout")

    assert all(p.startswith("not checked (timeout): ") for p in problems(records(), silent))


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("v=spf1 -all", "must start with v=DMARC1"),
        ("v=DMARC1; rua=mailto:a@b.example", "no valid p="),
        ("v=DMARC1; p", "without '='"),
    ],
)
def test_a_bad_dmarc_record_is_named(text, error):
    with pytest.raises(DmarcError, match=error):
        parse_dmarc(text)


def test_dmarc_tags():
    assert parse_dmarc("v=DMARC1; p=Reject; sp=none; pct=50")["sp"] == "none"
