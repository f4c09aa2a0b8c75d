"""Benchmark: the CPU a message costs to sign twice (RSA-2048 and Ed25519), by signer.

    .venv/bin/python benchmarks/dkim_sign.py [--messages 300] [--rounds 3]

Side by side in one process, on the same messages (2 kB and 50 kB bodies, the
milter's header list), each round timing in turn:
- **OpenSSL alone** (the baseline): one SHA-256 of the body and the two
  signatures through ``cryptography``, no canonicalization: the floor of any
  signer that uses OpenSSL;
- **the milter's signer** (``from_check.dkim_sign``): the relaxed body hash
  fed in 64 kB chunks as Postfix sends them, the headers, both signatures;
- **dkimpy** (Debian's python3-dkim, 1.1.4): ``dkim.sign`` twice, relaxed/relaxed,
  as dkimpy-milter calls it.
Each figure is process CPU time a message (``time.process_time``), median of the
rounds, with its ratio to the baseline and the issue's bound (both signatures
≤ 1.5 ms a message). Run it on an idle machine: the figures are CPU, but a busy
machine's caches still move them.
"""

import argparse
import base64
import hashlib
import pathlib
import statistics
import sys
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "services" / "from_check"))
sys.path.insert(0, str(REPO / "collections"))
import dkim  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa  # noqa: E402
from from_check.dkim_sign import BodyHasher, HeaderChoice, Key, sign  # noqa: E402

NAMES = ("from", "to", "cc", "subject", "date", "message-id", "mime-version", "content-type")
CHOICE = HeaderChoice(NAMES, ("from", "to", "cc", "subject", "date"))
BOUND_MS = 1.5
CHUNK = 65535


def message(body_bytes):
    headers = [
        (b"From", b"Alice <alice@runbox.com>"),
        (b"To", b"bob@example.org"),
        (b"Subject", b"A benchmark"),
        (b"Date", b"Mon, 07 Dec 2026 03:00:00 +0000"),
        (b"Message-ID", b"<1@runbox.com>"),
        (b"MIME-Version", b"1.0"),
        (b"Content-Type", b"text/plain; charset=utf-8"),
    ]
    line = b"The quick brown fox  jumps over the lazy dog, again and again.\r\n"
    body = line * (body_bytes // len(line))
    raw = b"".join(name + b": " + value + b"\r\n" for name, value in headers) + b"\r\n" + body
    return headers, body, raw


def openssl_alone(keys, headers, body, raw):
    digest = hashlib.sha256(body).digest()
    data = b"".join(name + b":" + value + b"\r\n" for name, value in headers) + digest
    keys[0].sign(data, padding.PKCS1v15(), hashes.SHA256())
    keys[1].sign(hashlib.sha256(data).digest())


def ours(signing_keys, headers, body, raw):
    hasher = BodyHasher()
    for start in range(0, len(body), CHUNK):
        hasher.update(body[start : start + CHUNK])
    sign(signing_keys, headers, hasher.digest(), CHOICE)


def dkimpy(dkimpy_keys, headers, body, raw):
    include = [name.encode() for name in NAMES]
    for selector, key, algorithm in dkimpy_keys:
        dkim.sign(
            raw,
            selector,
            b"runbox.com",
            key,
            canonicalize=(b"relaxed", b"relaxed"),
            signature_algorithm=algorithm,
            include_headers=include,
        )


def cpu_ms(function, argument, payload, count):
    start = time.process_time()
    for _ in range(count):
        function(argument, *payload)
    return (time.process_time() - start) * 1000 / count


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ed_key = ed25519.Ed25519PrivateKey.generate()
    pkcs8 = serialization.PrivateFormat.PKCS8
    rsa_pem = rsa_key.private_bytes(serialization.Encoding.PEM, pkcs8, serialization.NoEncryption())
    ed_pem = ed_key.private_bytes(serialization.Encoding.PEM, pkcs8, serialization.NoEncryption())
    signers = {
        "OpenSSL alone (baseline)": (openssl_alone, [rsa_key, ed_key]),
        "the milter's signer": (
            ours,
            [
                Key.load("runbox.com", "rsa1", "rsa-sha256", rsa_pem),
                Key.load("runbox.com", "ed1", "ed25519-sha256", ed_pem),
            ],
        ),
        "dkimpy 1.1.4 (python3-dkim)": (
            dkimpy,
            [
                (b"rsa1", rsa_pem, b"rsa-sha256"),
                (b"ed1", base64.b64encode(ed_key.private_bytes_raw()), b"ed25519-sha256"),
            ],
        ),
    }
    print(f"dkimpy {dkim.__file__}; {args.messages} messages a round, {args.rounds} rounds; CPU ms a message")
    for size in (2_000, 50_000):
        payload = message(size)
        times = {name: [] for name in signers}
        for _ in range(args.rounds):
            for name, (function, argument) in signers.items():
                count = args.messages if function is not dkimpy else max(10, args.messages // 10)
                times[name].append(cpu_ms(function, argument, payload, count))
        base = statistics.median(times["OpenSSL alone (baseline)"])
        print(f"\nbody {size // 1000} kB:")
        print(f"  {'signer':32} {'ms a message':>13} {'x baseline':>11}  bound ≤ {BOUND_MS} ms")
        for name, values in times.items():
            median = statistics.median(values)
            verdict = "" if name.startswith("OpenSSL") else ("met" if median <= BOUND_MS else "MISSED")
            print(f"  {name:32} {median:13.3f} {median / base:10.2f}x  {verdict}")


if __name__ == "__main__":
    main()
