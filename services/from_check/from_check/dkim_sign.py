"""DKIM signatures (RFC 6376), relaxed/relaxed, RSA-SHA256 and Ed25519-SHA256 (RFC 8463).

The milter signs each message twice (RSA for every receiver, Ed25519 for the
ones that know it) over one body hash. The signatures come from OpenSSL
through ``cryptography`` (Debian's python3-cryptography): Debian's
python3-dkim computes RSA in pure Python (two ``pow()`` calls a signature), 20
times the CPU of OpenSSL's constant-time code (benchmarks/dkim_sign.py).
What is written here is the canonicalization and the tags, checked against
dkimpy's signatures and verifier in the unit tests.

Postfix gives a milter the body in chunks, with CRLF line ends (its long lines
joined back), and each header as name and value: the value without the one
space after the colon, its folds as a bare LF.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

ALGORITHMS = ("rsa-sha256", "ed25519-sha256")
WSP_RUN = re.compile(rb"[ \t]+")

FOLDS = re.compile(rb"\r?\n")
# Where a signature header folds (RFC 5322 keeps lines under 78 characters).
LINE = 76


class SigningError(Exception):
    """A key that cannot sign: the message is deferred, never sent unsigned."""


def compress(text):
    """Each run of WSP as one space, and no WSP before a CRLF: ``bytes.replace``
    in C, a pass for each halving of the longest run, where a regular
    expression costs 30 times more on 50 kB (benchmarks/dkim_sign.py)."""
    if b"\t" in text:
        text = text.replace(b"\t", b" ")
    while b"  " in text:
        text = text.replace(b"  ", b" ")
    return text.replace(b" \r\n", b"\r\n")


class BodyHasher:
    """The SHA-256 of a body in relaxed canonical form (RFC 6376 3.4.4), fed in chunks.

    Each complete line is reduced at once (runs of WSP to one space, WSP at the
    line's end removed); empty lines are counted, not hashed, until a line with
    text follows them, since the empty lines at the body's end do not count.
    """

    def __init__(self):
        self.hash = hashlib.sha256()
        # The line not yet ended: only the new bytes are searched for its end,
        # so a body of one long line costs time linear in its length.
        self.partial = bytearray()
        self.empty = 0

    def update(self, chunk):
        if not chunk:
            return
        start = max(len(self.partial) - 1, 0)  # a CR at the end of the last chunk
        self.partial += chunk
        cut = self.partial.rfind(b"\r\n", start)
        if cut < 0:
            return
        complete = bytes(self.partial[: cut + 2])
        del self.partial[: cut + 2]
        text = compress(complete)
        end = len(text)
        while text.endswith(b"\r\n", 0, end):
            end -= 2
        lines = text[:end]
        ends = (len(text) - end) // 2
        if not lines:
            self.empty += ends
            return
        if self.empty:
            self.hash.update(b"\r\n" * self.empty)
        self.hash.update(lines + b"\r\n")
        self.empty = ends - 1

    def digest(self):
        """The hash; a last line without its CRLF counts as if it had one."""
        if self.partial:
            self.update(b"\r\n")
        return self.hash.digest()


def relaxed_header(name, value):
    """One header in relaxed canonical form (RFC 6376 3.4.2), with its CRLF.

    name and value are bytes; value as the milter gets it or as it follows the
    colon, folds included.
    """
    value = WSP_RUN.sub(b" ", FOLDS.sub(b"", value)).strip(b" ")
    return name.strip(b" \t").lower() + b":" + value + b"\r\n"


def header_key(name):
    """A header's name (bytes) as h= lists it."""
    return name.strip(b" \t").decode("ascii", "replace").lower()


@dataclass(frozen=True)
class HeaderChoice:
    """Which headers a signature covers: ``names`` (lower case), each once a
    copy the message has, and each of ``oversigned`` once more, so that a copy
    added later breaks the signature (RFC 6376 8.15)."""

    names: tuple
    oversigned: tuple = ()

    def listed(self, headers):
        """The h= names for headers [(name, value)]."""
        present = {}
        for name, _ in headers:
            key = header_key(name)
            present[key] = present.get(key, 0) + 1
        listed = []
        for name in self.names:
            listed += [name] * (present.get(name, 0) + (name in self.oversigned))
        return listed


def signed_headers(headers, listed):
    """The canonical text of the h= names, bottom-up per name (RFC 6376 5.4.2):
    each name takes its last copy not yet taken; a name with none left adds nothing."""
    copies = {}
    for name, value in headers:
        copies.setdefault(header_key(name), []).append((name, value))
    text = []
    for name in listed:
        left = copies.get(name)
        if left:
            text.append(relaxed_header(*left.pop()))
    return b"".join(text)


def fold(tags):
    """The signature header's value, folded between tags, after h='s colons
    and inside b= (not inside bh=: dkimpy, for one, compares it as written);
    its first line leaves room for ``DKIM-Signature: ``."""
    lines, line = [], "DKIM-Signature:"
    for tag in tags:
        pieces = [tag]
        if tag.startswith("b="):
            name, _, value = tag.partition("=")
            pieces = [f"{name}=" + value[:40]] + [value[i : i + 64] for i in range(40, len(value), 64)]
        elif tag.startswith("h="):
            names = tag.split(":")
            pieces = [each + ":" for each in names[:-1]] + names[-1:]
        for index, piece in enumerate(pieces):
            glue = "" if index and tag.startswith("h=") else " "
            if len(line) + len(glue) + len(piece) > LINE and line.strip():
                lines.append(line)
                line, glue = "", "\t"
            line += glue + piece
    lines.append(line)
    return "\n".join(lines).removeprefix("DKIM-Signature: ")


@dataclass(frozen=True)
class Key:
    domain: str
    selector: str
    algorithm: str
    private: object

    @classmethod
    def load(cls, domain, selector, algorithm, pem):
        """A key from its PKCS#8 (or traditional) PEM; SigningError names what is wrong."""
        if algorithm not in ALGORITHMS:
            raise SigningError(f"{domain} {selector}: unknown algorithm {algorithm!r}")
        try:
            private = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError) as exc:
            raise SigningError(f"{domain} {selector}: the key file holds no usable private key ({exc})") from None
        wanted = rsa.RSAPrivateKey if algorithm == "rsa-sha256" else ed25519.Ed25519PrivateKey
        if not isinstance(private, wanted):
            raise SigningError(f"{domain} {selector}: the key is not a {algorithm} key")
        if algorithm == "rsa-sha256" and private.key_size < 2048:
            raise SigningError(f"{domain} {selector}: an RSA key of {private.key_size} bits (2048 at least)")
        return cls(domain, selector, algorithm, private)

    def sign(self, data):
        if self.algorithm == "rsa-sha256":
            return self.private.sign(data, padding.PKCS1v15(), hashes.SHA256())
        # RFC 8463: Ed25519 signs the SHA-256 of the data.
        return self.private.sign(hashlib.sha256(data).digest())


def signature(key, headers, body_hash, choice, now=None):
    """The value of one DKIM-Signature header (folded with LF), for headers
    [(name, value) as bytes] in the message's order, the body's hash and a
    HeaderChoice."""
    listed = choice.listed(headers)
    return _signature(key, listed, signed_headers(headers, listed), body_hash, now)


def _signature(key, listed, canonical, body_hash, now):
    """One signature over the signed headers already in canonical form."""
    tags = [
        "v=1",
        f"a={key.algorithm}",
        "c=relaxed/relaxed",
        f"d={key.domain}",
        f"s={key.selector}",
        f"t={int(time.time() if now is None else now)}",
        "h=" + ":".join(listed),
        "bh=" + base64.b64encode(body_hash).decode(),
        "b=",
    ]
    unsigned = fold([each + ";" for each in tags[:-1]] + ["b="]).encode()
    data = canonical + relaxed_header(b"dkim-signature", unsigned)[:-2]
    value = base64.b64encode(key.sign(data)).decode()
    return fold([each + ";" for each in tags[:-1]] + ["b=" + value])


def sign(keys, headers, body_hash, choice, now=None):
    """One DKIM-Signature value a key, in the keys' order: the headers are
    listed and canonicalized once for all of them."""
    now = time.time() if now is None else now
    listed = choice.listed(headers)
    canonical = signed_headers(headers, listed)
    return [_signature(key, listed, canonical, body_hash, now) for key in keys]
