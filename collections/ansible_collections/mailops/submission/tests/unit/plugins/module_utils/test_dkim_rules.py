"""The DKIM rules: selectors, record names, records, the signing domain."""

import pytest
from ansible_collections.mailops.submission.plugins.module_utils.dkim_rules import (
    OVERSIGNED,
    SIGNED_HEADERS,
    DkimRuleError,
    key_name,
    key_record,
    record_name,
    selector_algorithm,
    signing_domain,
    txt_strings,
)

KEY_DOMAINS = {"runbox.com", "hosted.example"}


@pytest.mark.parametrize(
    ("from_domain", "signer"),
    [
        ("runbox.com", "runbox.com"),
        ("hosted.example", "hosted.example"),
        ("Mail.Hosted.Example", "hosted.example"),  # a subdomain aligns with its parent under relaxed DMARC
        ("gmail.example", "runbox.com"),  # a validated address elsewhere
        ("example", "runbox.com"),  # a single label never matches a parent
        (None, "runbox.com"),  # no readable From
        ("evilhosted.example", "runbox.com"),  # a suffix of text is not a parent
    ],
)
def test_the_signing_domain(from_domain, signer):
    assert signing_domain(from_domain, KEY_DOMAINS, "runbox.com") == signer


def test_selectors_name_their_algorithm_and_anything_else_is_refused_by_name():
    assert [selector_algorithm(s) for s in ("rsa1", "rsa2", "ed1", "ed2")] == ["rsa-sha256"] * 2 + [
        "ed25519-sha256"
    ] * 2
    with pytest.raises(DkimRuleError, match="'default' is not a selector slot"):
        selector_algorithm("default")


def test_hosted_keys_live_in_the_provider_zone_under_names_no_other_domain_meets():
    assert record_name("hosted.example", "rsa1") == "rsa1._domainkey.hosted.example"
    assert key_name("runbox.com", "rsa1", "runbox.com") == "rsa1._domainkey.runbox.com"
    assert key_name("hosted.example", "ed2", "runbox.com") == "ed2.hosted.example._domainkey.runbox.com"
    # Two hosted domains, or a hosted domain and the provider's selectors, never share a name.
    names = {key_name(d, s, "runbox.com") for d in ("runbox.com", "a.example", "b.example") for s in ("rsa1", "ed1")}
    assert len(names) == 6
    long_domain = ".".join(["a" * 60] * 4)
    with pytest.raises(DkimRuleError, match=r"past DNS's 253"):
        key_name(long_domain, "rsa1", "runbox.com")


def test_records_and_their_txt_strings():
    assert key_record("ed25519-sha256", "QUJD") == "v=DKIM1; k=ed25519; p=QUJD"
    text = key_record("rsa-sha256", "A" * 392)
    strings = txt_strings(text)
    assert "".join(strings) == text and all(len(each) <= 255 for each in strings) and len(strings) == 2
    with pytest.raises(DkimRuleError, match="'rsa-sha1'"):
        key_record("rsa-sha1", "QUJD")


def test_from_is_signed_and_oversigned():
    assert "from" in SIGNED_HEADERS and "from" in OVERSIGNED
    assert set(OVERSIGNED) <= set(SIGNED_HEADERS)
