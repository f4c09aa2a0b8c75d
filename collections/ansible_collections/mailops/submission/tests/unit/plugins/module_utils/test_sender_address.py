import pytest
from ansible_collections.mailops.submission.plugins.module_utils.sender_address import (
    AddressError,
    mailbox,
    normalize_login,
    normalize_sender,
)


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("alice@runbox.com", "alice@runbox.com"),
        ("Alice.Smith@RunBox.COM", "alice.smith@runbox.com"),
        ("@Hosted.Example", "@hosted.example"),
        ("user+tag@runbox.com", "user+tag@runbox.com"),
        ("o'brien@runbox.com", "o'brien@runbox.com"),
        ("user@bücher.example", "user@xn--bcher-kva.example"),
        ("@BÜCHER.example", "@xn--bcher-kva.example"),
        ("user@xn--bcher-kva.example", "user@xn--bcher-kva.example"),
        # IDNA 2008 (UTS 46, non-transitional): not IDNA 2003's fass.de, another domain.
        ("user@faß.de", "user@xn--fa-hia.de"),
        ("user@FASS.de", "user@fass.de"),
        ("a" * 64 + "@runbox.com", "a" * 64 + "@runbox.com"),
        ("x@" + "a" * 63 + ".example", "x@" + "a" * 63 + ".example"),
        ("x@" + ".".join(["a" * 63] * 3) + "." + "b" * 61, "x@" + ".".join(["a" * 63] * 3) + "." + "b" * 61),
        ("x@Xn--P1AI.xn--p1ai", "x@xn--p1ai.xn--p1ai"),
        ("x@1-2.example.a1", "x@1-2.example.a1"),
    ],
)
def test_sender_keys_are_normalised(raw, canonical):
    assert normalize_sender(raw) == canonical


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("alice smith@runbox.com", "whitespace"),
        ("alice@runbox.com ", "whitespace"),
        ("alice\t@runbox.com", "control character"),
        ("alice\x00@runbox.com", "control character"),
        ("alice\x7f@runbox.com", "control character"),
        ("alice,bob@runbox.com", "comma"),
        ("alice%runbox.com@relay.example", "percent"),
        ("relay!alice@runbox.com", "bang path"),
        ("@relay.example:alice@runbox.com", "source route"),
        ("@a.example,@b.example:alice@runbox.com", "comma"),
        ('"alice smith"@runbox.com', "whitespace"),
        ('"alice"@runbox.com', "quoted local part"),
        ("alice\\x@runbox.com", "quoted local part"),
        ("alice@runbox..com", "empty label"),
        ("alice@.runbox.com", "empty label"),
        ("alice@runbox.com.", "trailing dot"),
        (".alice@runbox.com", "empty dot-separated part"),
        ("alice.@runbox.com", "empty dot-separated part"),
        ("al..ice@runbox.com", "empty dot-separated part"),
        ("a" * 65 + "@runbox.com", "longer than 64 octets"),
        ("é" * 33 + "@runbox.com", "longer than 64 octets"),
        ("x@" + "a" * 64 + ".example", "longer than 63 octets"),
        ("x@" + ".".join(["a" * 63] * 4) + ".example", "longer than 253 octets"),
        ("x@" + ".".join(["a" * 63] * 3) + "." + "b" * 62, "longer than 253 octets"),
        ("alice@192.0.2.1", "digits only"),
        ("#alice@runbox.com", "starts with '#'"),
        ("alice", "exactly one '@'"),
        ("alice@bob@runbox.com", "exactly one '@'"),
        ("alice@", "empty domain"),
        ("alice@localhost", "at least two labels"),
        ("alice@[192.0.2.1]", "address literals"),
        ("alice@-runbox.com", "outside letters"),
        ("alice@run_box.com", "outside letters"),
        ("al(ice)@runbox.com", "not allowed"),
        ("=?utf-8?q?attacker=40evil.example?=@gmail.com", "encoded word"),
        ("=?utf-8?q?a=0D=0Ab?=@gmail.com", "encoded word"),
        ("alice=?x@gmail.com", "encoded word"),
        ("alice\r\n@gmail.com", "control character"),
        ("", "empty"),
    ],
)
def test_bad_sender_keys_are_refused_with_the_reason(raw, reason):
    with pytest.raises(AddressError) as caught:
        normalize_sender(raw)
    assert reason in str(caught.value)
    assert repr(raw) in str(caught.value), "the message must name the offending value"


def test_a_non_string_is_refused():
    with pytest.raises(AddressError, match="not a string"):
        normalize_sender(None)


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [("Alice@RunBox.com", "alice@runbox.com"), ("bob@hosted.example", "bob@hosted.example")],
)
def test_logins_are_normalised(raw, canonical):
    assert normalize_login(raw) == canonical


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("@hosted.example", "needs a local part"),
        ("alice", "exactly one '@'"),
        ("bob%hosted.example", "percent"),
        ("o'brien@runbox.com", "not allowed"),
        ("alice@runbox.com.", "trailing dot"),
    ],
)
def test_bad_logins_are_refused(raw, reason):
    with pytest.raises(AddressError) as caught:
        normalize_login(raw)
    assert reason in str(caught.value)


@pytest.mark.parametrize(
    ("sender", "box"),
    [
        ("victim@gmail.com", "victim@gmail.com"),
        ("victim+1@gmail.com", "victim@gmail.com"),
        ("v.ictim@gmail.com", "victim@gmail.com"),
        ("v.i.c.t.i.m+x+y@googlemail.com", "victim@gmail.com"),
        ("v.ictim+1@example.org", "v.ictim@example.org"),
        ("+tag@example.org", "+tag@example.org"),
    ],
)
def test_variants_of_one_mailbox_have_one_mailbox_key(sender, box):
    assert mailbox(sender) == box
