"""The signer against dkimpy (Debian's python3-dkim), an implementation it
shares no code with: dkimpy must verify what it signs, and both must compute
the same body hash and, for the same signature header, the same signature
(RSA PKCS#1 v1.5 and Ed25519 are deterministic)."""

import base64
import hashlib
import re

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from from_check.dkim_sign import (
    BodyHasher,
    HeaderChoice,
    Key,
    SigningError,
    relaxed_header,
    sign,
    signature,
    signed_headers,
)
from hypothesis import given, settings
from hypothesis import strategies as st

CHOICE = HeaderChoice(
    ("from", "to", "cc", "subject", "date", "message-id", "mime-version", "content-type"),
    ("from", "to", "cc", "subject", "date"),
)


def pem(private):
    return private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@pytest.fixture(scope="module")
def keys():
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ed_key = ed25519.Ed25519PrivateKey.generate()
    return [
        Key.load("runbox.com", "rsa1", "rsa-sha256", pem(rsa_key)),
        Key.load("runbox.com", "ed1", "ed25519-sha256", pem(ed_key)),
    ]


def theirs_format(key):
    """The key as dkimpy reads it: PEM for RSA, the base64 seed for Ed25519."""
    if key.algorithm == "rsa-sha256":
        return pem(key.private)
    return base64.b64encode(key.private.private_bytes_raw())


def record(key):
    public = key.private.public_key()
    if key.algorithm == "rsa-sha256":
        data = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return b"v=DKIM1; k=rsa; p=" + base64.b64encode(data)
    data = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return b"v=DKIM1; k=ed25519; p=" + base64.b64encode(data)


def dns_of(keys):
    records = {f"{key.selector}._domainkey.{key.domain}.".encode(): record(key) for key in keys}
    return lambda name, timeout=5: records.get(name)


def milter_headers(raw_headers):
    """Headers as Postfix hands them to a milter: the value without the one
    space after the colon, its folds as bare LF."""
    headers = []
    for name, raw in raw_headers:
        value = raw.replace(b"\r\n", b"\n")
        headers.append((name, value[1:] if value.startswith(b" ") else value))
    return headers


def signed_message(keys, raw_headers, body, now=None):
    hasher = BodyHasher()
    hasher.update(body)
    values = sign(keys, milter_headers(raw_headers), hasher.digest(), CHOICE, now)
    top = b"".join(b"DKIM-Signature: " + value.replace("\n", "\r\n").encode() + b"\r\n" for value in values)
    return top + b"".join(name + b":" + value + b"\r\n" for name, value in raw_headers) + b"\r\n" + body


def verdicts(message, keys):
    """dkimpy's verdict on each signature (a body hash mismatch is an exception there)."""
    checker = dkim.DKIM(message)
    results = []
    for index in range(len(keys)):
        try:
            results.append(checker.verify(idx=index, dnsfunc=dns_of(keys)))
        except dkim.ValidationError:
            results.append(False)
    return results


HEADERS = [
    (b"From", b" Alice <alice@runbox.com>"),
    (b"To", b" bob@example.org,\r\n\tcarol@example.org"),
    (b"Subject", b"  A  subject\twith   runs  "),
    (b"Date", b" Mon, 07 Dec 2026 03:00:00 +0000"),
    (b"Message-ID", b" <1@runbox.com>"),
    (b"X-Unsigned", b" not in h="),
]


def test_both_signatures_verify_with_dkimpy(keys):
    message = signed_message(keys, HEADERS, b"Hello,  world \r\n\r\nBye.\r\n\r\n\r\n")
    assert verdicts(message, keys) == [True, True]
    # The control: each test below fails it if the signer stopped signing at all.
    assert message.count(b"DKIM-Signature:") == 2


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda m: m.replace(b"Bye.", b"Bye!"), id="body"),
        pytest.param(lambda m: m.replace(b"alice@runbox.com", b"mallory@runbox.com"), id="from"),
        pytest.param(lambda m: m.replace(b"\r\n\r\nHello", b"\r\nFrom: other@runbox.com\r\n\r\nHello"), id="2nd-from"),
        pytest.param(lambda m: m.replace(b"\r\n\r\nHello", b"\r\nCc: eve@example.org\r\n\r\nHello"), id="added-cc"),
    ],
)
def test_a_changed_message_fails(keys, change):
    message = signed_message(keys, HEADERS, b"Hello,  world \r\n\r\nBye.\r\n")
    assert verdicts(change(message), keys) == [False, False]


def test_a_header_not_in_the_list_may_change(keys):
    message = signed_message(keys, HEADERS, b"Hi.\r\n")
    assert verdicts(message.replace(b"not in h=", b"changed"), keys) == [True, True]


def test_the_body_hash_and_signature_equal_dkimpys(keys):
    """For the header dkimpy writes, our code computes dkimpy's b= exactly."""
    raw = b"".join(name + b":" + value + b"\r\n" for name, value in HEADERS) + b"\r\nHi  there\t\r\n\r\n"
    for key in keys:
        theirs = dkim.sign(
            raw,
            key.selector.encode(),
            key.domain.encode(),
            theirs_format(key),
            canonicalize=(b"relaxed", b"relaxed"),
            signature_algorithm=key.algorithm.encode(),
            include_headers=[b"from", b"to", b"subject"],
        )
        header = theirs.decode().removeprefix("DKIM-Signature: ").rstrip("\r\n")
        fields = dict(re.findall(r"(\w+)=([^;]*)", re.sub(r"\s+", "", header)))
        hasher = BodyHasher()
        hasher.update(b"Hi  there\t\r\n\r\n")
        assert base64.b64encode(hasher.digest()).decode() == fields["bh"]
        unsigned = re.sub(r"b=[^;]*$", "b=", header).replace("\r\n", "\n").encode()
        data = (
            signed_headers(milter_headers(HEADERS), ["from", "to", "subject"])
            + relaxed_header(b"DKIM-Signature", unsigned)[:-2]
        )
        assert base64.b64encode(key.sign(data)).decode() == fields["b"]


@pytest.mark.parametrize(
    ("chunks", "canonical"),
    [
        ([b""], b""),
        ([b"\r\n\r\n"], b""),
        ([b" \t \r\n"], b""),
        ([b"a \t b  \r\n"], b"a b\r\n"),
        ([b"a\r\n\r\n\r\nb\r\n\r\n"], b"a\r\n\r\n\r\nb\r\n"),
        ([b"a\r", b"\nb"], b"a\r\nb\r\n"),  # a CRLF across two chunks; no final CRLF
        ([b"a\r\n\r\n", b"\r\n", b"b\r\n"], b"a\r\n\r\n\r\nb\r\n"),  # empty lines across chunks
        ([b"x\r\r\n"], b"x\r\r\n"),  # a lone CR is text
    ],
)
def test_relaxed_body(chunks, canonical):
    hasher = BodyHasher()
    for chunk in chunks:
        hasher.update(chunk)
    assert hasher.digest() == hashlib.sha256(canonical).digest()


line_text = st.text(alphabet=st.sampled_from("ab \t.=-é"), max_size=40).map(lambda s: s.encode())
bodies = st.lists(line_text, max_size=12).map(lambda lines: b"".join(each + b"\r\n" for each in lines))
header_values = st.text(alphabet=st.sampled_from("xy \t:;<>@."), min_size=1, max_size=30).map(
    lambda s: b" x" + s.encode()
)


@st.composite
def header_lists(draw):
    """From, a Subject with runs of WSP and maybe a fold, zero to two To."""
    subject = draw(header_values) + draw(st.sampled_from([b"", b"\r\n\tmore"]))
    copies = draw(st.integers(min_value=0, max_value=2))
    return [(b"From", b" alice@runbox.com"), (b"Subject", subject)] + [
        (b"To", b" r%d@example.org" % index) for index in range(copies)
    ]


@settings(max_examples=60, deadline=None)
@given(body=bodies, cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=4), headers=header_lists())
def test_any_message_verifies(keys, body, cuts, headers):
    """Bodies of any lines in any chunks, headers with runs, folds and copies:
    dkimpy verifies both signatures."""
    hasher = BodyHasher()
    start = 0
    for cut in [*sorted(cuts), len(body)]:
        hasher.update(body[start:cut])
        start = max(start, cut)
    hasher.update(body[start:])
    values = sign(keys, milter_headers(headers), hasher.digest(), CHOICE)
    top = b"".join(b"DKIM-Signature: " + value.replace("\n", "\r\n").encode() + b"\r\n" for value in values)
    message = top + b"".join(name + b":" + value + b"\r\n" for name, value in headers) + b"\r\n" + body
    assert verdicts(message, keys) == [True, True]


def test_the_signature_header_is_folded_and_tagged(keys):
    value = signature(keys[0], milter_headers(HEADERS), b"\0" * 32, CHOICE, now=1796000000)
    assert all(len(line) <= 78 for line in ("DKIM-Signature: " + value).split("\n"))
    compact = re.sub(r"\s+", "", value)
    assert compact.startswith("v=1;a=rsa-sha256;c=relaxed/relaxed;d=runbox.com;s=rsa1;t=1796000000;")
    # Every copy present, and the oversigned names once more than the message has.
    assert "h=from:from:to:to:cc:subject:subject:date:date:message-id;" in compact


@pytest.mark.parametrize(
    ("algorithm", "make", "error"),
    [
        ("rsa-sha256", ed25519.Ed25519PrivateKey.generate, "not a rsa-sha256 key"),
        # A weak key, made to see it refused.
        ("rsa-sha256", lambda: rsa.generate_private_key(public_exponent=65537, key_size=1024), "1024 bits"),  # noqa: S505
        ("ed448", ed25519.Ed25519PrivateKey.generate, "unknown algorithm 'ed448'"),
    ],
)
def test_an_unusable_key_is_refused_by_name(algorithm, make, error):
    with pytest.raises(SigningError, match=f"hosted.example rsa2: .*{error}"):
        Key.load("hosted.example", "rsa2", algorithm, pem(make()))


def test_a_file_without_a_key_is_refused():
    with pytest.raises(SigningError, match="holds no usable private key"):
        Key.load("hosted.example", "ed2", "ed25519-sha256", b"-----BEGIN PRIVATE KEY-----\nAAAA\n")
