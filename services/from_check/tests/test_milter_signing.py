"""Signing in the milter, as Postfix drives it: the headers, an answer, the
body in chunks, the end of the message; the two DKIM-Signature headers it
inserts must pass dkimpy's verifier (Debian's python3-dkim) on the message
as it leaves, with d= the domain the rules choose. A message that cannot be
signed gets 451, never an accept."""

import asyncio
import base64
import json
import os
import struct
import threading
import time

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from from_check.check import Verdict
from from_check.dkim_sign import BodyHasher, SigningError
from from_check.keyring import Keyring
from from_check.milter import Judge, Signing
from milter_client import Postfix, serving

ALICE = "alice@runbox.com"
BODY = b"Hello,\r\n\r\nthe  figures   are attached.\r\n\r\n"


def write_key(directory, domain, selector, algorithm):
    if algorithm == "rsa-sha256":
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:
        private = ed25519.Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (directory / domain).mkdir(exist_ok=True)
    path = directory / domain / f"{selector}.pem"
    path.write_bytes(pem)
    public = private.public_key()
    if algorithm == "rsa-sha256":
        data = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        text = b"v=DKIM1; k=rsa; p=" + base64.b64encode(data)
    else:
        data = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        text = b"v=DKIM1; k=ed25519; p=" + base64.b64encode(data)
    return f"{domain}/{selector}.pem", text


class Keys:
    """A key directory as the dkim_keys module writes it, and the DNS a verifier would read."""

    def __init__(self, directory):
        self.directory = directory
        self.entries = []
        self.records = {}
        self.manifest = directory / "keys.json"

    def add(self, domain, state="active", ed25519_state=None):
        for selector, algorithm in (("rsa1", "rsa-sha256"), ("ed1", "ed25519-sha256")):
            file, record = write_key(self.directory, domain, selector, algorithm)
            if algorithm == "ed25519-sha256" and ed25519_state:
                state = ed25519_state
            entry = {"domain": domain, "selector": selector, "algorithm": algorithm, "state": state, "file": file}
            self.entries.append(entry)
            self.records[f"{selector}._domainkey.{domain}.".encode()] = record
        self.write()

    def write(self):
        text = json.dumps({"provider_domain": "runbox.com", "keys": self.entries})
        temporary = self.directory / "keys.json.new"
        temporary.write_text(text)
        os.replace(temporary, self.manifest)

    def dns(self, name, timeout=5):
        return self.records.get(name)


@pytest.fixture
def keys(tmp_path):
    directory = tmp_path / "dkim"
    directory.mkdir()
    made = Keys(directory)
    made.add("runbox.com")
    return made


@pytest.fixture
def signing_milter(tables, store_socket, keys, tmp_path):
    """The milter with signing on its submission socket, and a sign-only and a check-only socket."""
    paths = {name: str(tmp_path / f"{name}.sock") for name in ("socket", "sign_socket", "check_socket")}
    config = {
        **{name: f"unix:{path}" for name, path in paths.items()},
        "lmdb_tables": tables,
        "store_socket": store_socket,
        "dkim": {"manifest": str(keys.manifest)},
        "send_as_anyone": ["lists@runbox.com"],
        "deadline": 2,
    }
    with serving(config):
        yield paths


def send(postfix, login, headers, body=BODY, chunk=7):
    """A whole message as Postfix gives it; the replies to its end of headers and to its end."""
    postfix.headers(login, headers)
    first = postfix.receive()
    if first[0] != b"c":
        return first, []
    for start in range(0, len(body), chunk):
        postfix.send(b"B", body[start : start + chunk])
    postfix.send(b"E")
    replies = []
    while not replies or replies[-1][0] == b"i":
        replies.append(postfix.receive())
    return first, replies


def leaving(headers, replies, body=BODY):
    """The message as Postfix writes it out: the inserted headers at the top,
    each at index 0 (the last inserted first), folded with CRLF."""
    top = []
    for command, data in replies[:-1]:
        assert command == b"i"
        index = struct.unpack("!I", data[:4])[0]
        name, value, _ = data[4:].split(b"\0")
        assert (index, name) == (0, b"DKIM-Signature")
        top.insert(0, name + b": " + value.replace(b"\n", b"\r\n") + b"\r\n")
    rest = b"".join(name.encode() + b": " + value.encode().replace(b"\n", b"\r\n") + b"\r\n" for name, value in headers)
    return b"".join(top) + rest + b"\r\n" + body


def verified(message, keys):
    """[(d, s, a, passes)] for each signature, as dkimpy sees them."""
    checker = dkim.DKIM(message)
    results = []
    for index in range(message.count(b"DKIM-Signature:")):
        try:
            ok = checker.verify(idx=index, dnsfunc=keys.dns)
        except dkim.ValidationError:
            ok = False
        tags = checker.signature_fields or {}
        results.append((tags.get(b"d", b"").decode(), tags.get(b"s", b"").decode(), ok))
    return results


def test_a_signing_socket_asks_for_the_body_and_leave_to_add_headers(signing_milter):
    postfix = Postfix(signing_milter["socket"])
    _, data = postfix.negotiate()
    _, actions, steps = struct.unpack("!III", data[:12])
    assert actions == 0x100 | 0x1
    # The body (no 0x10), with no reply to each chunk (0x80000).
    assert steps & 0x10 == 0 and steps & 0x80000
    check_only = Postfix(signing_milter["check_socket"])
    _, data = check_only.negotiate()
    assert struct.unpack("!III", data[:12])[1:] == (0x100, 0x1 | 0x2 | 0x4 | 0x8 | 0x10 | 0x80 | 0x100 | 0x200)


MESSAGE = [
    ("From", "Alice <alice@runbox.com>"),
    ("To", "bob@example.org,\n\tcarol@example.org"),
    ("Subject", "Figures"),
    ("Date", "Mon, 07 Dec 2026 03:00:00 +0000"),
    ("Message-ID", "<1@runbox.com>"),
    ("X-Mailer", "not signed"),
]


def test_an_accepted_message_leaves_with_two_signatures_that_verify(signing_milter, keys):
    postfix = Postfix(signing_milter["socket"])
    postfix.negotiate()
    first, replies = send(postfix, ALICE, MESSAGE)
    assert first == (b"c", b"")
    assert [command for command, _ in replies] == [b"i", b"i", b"a"]
    message = leaving(MESSAGE, replies)
    assert verified(message, keys) == [("runbox.com", "rsa1", True), ("runbox.com", "ed1", True)]
    # The control: a changed body or From fails both.
    assert [ok for *_, ok in verified(message.replace(b"figures", b"figure5"), keys)] == [False, False]
    changed_from = message.replace(b"Alice <alice@", b"Alice <alicia@")
    assert [ok for *_, ok in verified(changed_from, keys)] == [False, False]
    # The next message of the same connection is signed on its own.
    first, replies = send(postfix, ALICE, MESSAGE, body=b"Another.\r\n", chunk=3)
    assert [ok for *_, ok in verified(leaving(MESSAGE, replies, b"Another.\r\n"), keys)] == [True, True]


def test_a_refused_message_gets_no_body_asked_and_nothing_inserted(signing_milter):
    postfix = Postfix(signing_milter["socket"])
    postfix.negotiate()
    first, replies = send(postfix, ALICE, [("From", "ceo@bank.example")])
    assert first[0] == b"y" and first[1].startswith(b"550 5.7.1 ") and replies == []
    # The connection goes on: the next message is signed.
    first, replies = send(postfix, ALICE, MESSAGE)
    assert first == (b"c", b"") and len(replies) == 3


BOB = "bob@hosted.example"


@pytest.mark.parametrize(
    ("client", "hosted", "domain"),
    [
        # The From check judged bob's From: his domain signs, aligned.
        (("socket", BOB), {}, "hosted.example"),
        # Its records not seen yet, or only its Ed25519 key active: the provider signs.
        (("socket", BOB), {"state": "pending"}, "runbox.com"),
        (("socket", BOB), {"state": "pending", "ed25519_state": "active"}, "runbox.com"),
        # No judgment of the From (a login that may send as anyone, a socket without the
        # check): never aligned with a domain the login was not checked for.
        (("socket", "lists@runbox.com"), {}, "runbox.com"),
        (("sign_socket", None), {}, "runbox.com"),
    ],
)
def test_the_from_domain_signs_only_when_judged_and_ready(signing_milter, keys, client, hosted, domain):
    socket, login = client
    keys.add("hosted.example", **hosted)
    postfix = Postfix(signing_milter[socket])
    postfix.negotiate()
    headers = [("From", BOB), ("Subject", "x")]
    _, replies = send(postfix, login, headers)
    assert [(d, ok) for d, _, ok in verified(leaving(headers, replies), keys)] == [(domain, True), (domain, True)]


def test_no_usable_key_defers_and_a_fixed_key_signs_again(signing_milter, keys):
    postfix = Postfix(signing_milter["sign_socket"])
    postfix.negotiate()
    key_file = keys.directory / "runbox.com" / "rsa1.pem"
    pem = key_file.read_bytes()
    key_file.write_bytes(b"not a key")
    keys.write()  # a new manifest: the milter reads the keys again
    _, replies = send(postfix, ALICE, MESSAGE)
    command, text = replies[-1]
    assert command == b"y"
    assert text == b"451 4.3.0 this message cannot be signed now; try again later\0"
    # The operator restores the file; the manifest stays as it was.
    key_file.write_bytes(pem)
    deadline = time.monotonic() + 5  # the keyring tries a broken key again each second
    while time.monotonic() < deadline:
        _, replies = send(postfix, ALICE, MESSAGE)
        if replies[-1][0] == b"a":
            break
        time.sleep(0.05)  # polling for the retry, not waiting a fixed time
    assert [command for command, _ in replies] == [b"i", b"i", b"a"]
    # No active key at all: deferred too.
    for entry in keys.entries:
        entry["state"] = "pending"
    keys.write()
    _, replies = send(postfix, ALICE, MESSAGE)
    assert replies[-1][0] == b"y" and replies[-1][1].startswith(b"451 ")


def test_an_end_of_message_without_its_headers_is_deferred_on_a_signing_socket(signing_milter):
    postfix = Postfix(signing_milter["sign_socket"])
    postfix.negotiate()
    postfix.send(b"E")
    command, text = postfix.receive()
    assert (command, text[:10]) == (b"y", b"451 4.3.0 ")


def test_headers_past_the_limit_defer_and_many_copies_still_verify(signing_milter, keys):
    """Many copies of a header, and headers past the size the loop signs at once, verify;
    headers past MAX_SIGNED_BYTES are deferred."""
    postfix = Postfix(signing_milter["sign_socket"])
    postfix.negotiate()
    # 60 To headers: more copies than the milter keeps; the last 50 are signed.
    headers = [("From", ALICE)] + [("To", f"r{index}@example.org") for index in range(60)]
    _, replies = send(postfix, None, headers)
    assert [ok for *_, ok in verified(leaving(headers, replies), keys)] == [True, True]
    # Past INLINE_SIGNED_BYTES (40 kB of References): signed in the signing thread, not on the loop.
    big = [("From", ALICE)] + [("References", "<" + "x" * 4000 + ">") for _ in range(10)]
    _, replies = send(postfix, None, big)
    assert [ok for *_, ok in verified(leaving(big, replies), keys)] == [True, True]
    huge = [("From", ALICE)] + [("References", "<" + "x" * 60000 + ">") for _ in range(20)]
    _, replies = send(postfix, None, huge)
    assert replies[-1][0] == b"y" and replies[-1][1].startswith(b"451 ")


def test_small_headers_sign_on_the_loop_once_the_keys_are_read_and_the_rest_in_the_thread(keys):
    """Which thread signs: a manifest to read (first, or changed) and big headers go to
    the signing thread; small headers with the keys already read sign on the loop."""
    judge = Judge(check=None, deadline=2, keyring=Keyring(str(keys.manifest)))
    threads = []
    sign = judge.sign

    def spy(signing):
        threads.append("loop" if threading.current_thread() is threading.main_thread() else "thread")
        return sign(signing)

    judge.sign = spy

    def signing(inline):
        return Signing([(b"From", ALICE.encode())], frozenset(), "Q1", "alice", BodyHasher(), inline=inline)

    async def run(inlines):
        return [await judge.signatures(signing(inline)) for inline in inlines]

    try:
        first = asyncio.run(run([True, True, False]))
        keys.add("hosted.example")  # a new manifest: read again, off the loop
        second = asyncio.run(run([True, True]))
    finally:
        judge.close()
    assert not [result for result in first + second if isinstance(result, Verdict)], first + second
    assert threads == ["thread", "loop", "thread", "thread", "loop"]


def slowed(keyring):
    """The keyring with its manifest read held until release() (started: the read has begun)."""
    started, go = threading.Event(), threading.Event()
    load = keyring.load

    def held():
        started.set()
        go.wait(10)
        return load()

    keyring.load = held
    return started, go.set


def test_a_message_the_keys_read_before_cannot_sign_waits_for_the_read_under_way(keys):
    """A first install: the keys were pending when the milter read them and have just been
    activated. While one message reads the new manifest, another waits for it instead of
    being deferred with "no active signing key"."""
    keys.entries = [dict(entry, state="pending") for entry in keys.entries]
    keys.write()
    keyring = Keyring(str(keys.manifest))
    with pytest.raises(SigningError, match=r"runbox\.com has no active signing key"):
        keyring.signing_keys("runbox.com")
    keys.entries = [dict(entry, state="active") for entry in keys.entries]
    keys.write()
    started, release = slowed(keyring)
    found = {}

    def sign_as(name):
        try:
            found[name] = [key.selector for key in keyring.signing_keys("runbox.com")]
        except SigningError as exc:
            found[name] = str(exc)

    reader = threading.Thread(target=sign_as, args=("reader",))
    reader.start()
    assert started.wait(10)
    waiter = threading.Thread(target=sign_as, args=("waiter",))
    waiter.start()
    waiter.join(0.5)
    assert waiter.is_alive(), f"it did not wait for the read under way: {found}"
    release()
    reader.join(10)
    waiter.join(10)
    assert found == {"reader": ["rsa1", "ed1"], "waiter": ["rsa1", "ed1"]}


def test_a_message_the_keys_read_before_can_sign_does_not_wait_for_a_read(keys):
    """A rotation: while one message reads the changed manifest, the others go on with the
    keys read before, without waiting."""
    keyring = Keyring(str(keys.manifest))
    assert [key.selector for key in keyring.signing_keys("runbox.com")] == ["rsa1", "ed1"]
    keys.add("hosted.example")
    started, release = slowed(keyring)
    reader = threading.Thread(target=keyring.signing_keys, args=("runbox.com",))
    reader.start()
    try:
        assert started.wait(10)
        assert [key.selector for key in keyring.signing_keys("runbox.com")] == ["rsa1", "ed1"]
        assert reader.is_alive(), "the read finished first: the test showed nothing"
    finally:
        release()
        reader.join(10)


def test_the_provider_signs_with_what_it_has_while_an_added_algorithm_waits(signing_milter, keys):
    """An algorithm added later is pending until its record is seen: the provider's
    mail goes on, signed with the algorithm already active, not deferred."""
    for entry in keys.entries:
        if entry["algorithm"] == "ed25519-sha256":
            entry["state"] = "pending"
    keys.write()
    postfix = Postfix(signing_milter["socket"])
    postfix.negotiate()
    _, replies = send(postfix, ALICE, MESSAGE)
    assert [command for command, _ in replies] == [b"i", b"a"]
    assert verified(leaving(MESSAGE, replies), keys) == [("runbox.com", "rsa1", True)]
