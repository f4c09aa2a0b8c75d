"""The signing keys: the manifest the dkim_keys module writes, and the key files it names.

The manifest (JSON, public data only) lists each key's domain, selector,
algorithm, state and file; the files hold the private keys (PKCS#8 PEM),
readable by root and the milter's group. Only ``active`` keys sign: the module
makes a key active once its DNS record is seen (or the operator forces it),
and keeps the one before it published while mail signed with it is in flight.

The keyring reads the manifest again when the file changes (its device,
inode, modification time or size), as the lmdb tables are reopened: the module
replaces it atomically after writing the key files, so a reader sees the old
set or the new one, never half of one.

Which keys sign a message: those of the From header's domain (or its nearest
parent) when it has active keys, else those of the provider's domain (a
validated address elsewhere, or a hosted domain whose records are not yet
seen). No active key for either, or a key file that cannot be read, is a
SigningError: the milter defers the message (451), it never leaves unsigned.
"""

from __future__ import annotations

import json
import os
import threading
import time

from ansible_collections.mailops.submission.plugins.module_utils.dkim_rules import ALGORITHMS, signing_domain

from from_check.dkim_sign import Key, SigningError
from from_check.tables import file_identity


class Keyring:
    def __init__(self, manifest):
        self.manifest = manifest
        self.lock = threading.Lock()
        self.seen = None
        self.provider_domain = None
        # domain -> [Key] (one an algorithm), or domain -> the reason it cannot sign.
        self.keys = {}
        self.broken = {}
        self.error = "no manifest read yet"
        self.loaded_at = 0.0

    # A key file that could not be read is tried again this often (seconds),
    # so that mail flows again once the operator fixes it, manifest unchanged.
    RETRY = 1.0

    def current(self):
        """Read the manifest again if it changed; SigningError if it cannot be read."""
        try:
            seen = file_identity(self.manifest)
        except OSError as exc:
            raise SigningError(f"the key manifest {self.manifest} cannot be read: {exc.strerror}") from None
        with self.lock:
            retry = (self.broken or self.error) and time.monotonic() - self.loaded_at >= self.RETRY
            if seen != self.seen or retry:
                self.seen = seen
                self.loaded_at = time.monotonic()
                try:
                    self.load()
                    self.error = None
                except (OSError, ValueError, KeyError, TypeError) as exc:
                    self.keys, self.broken = {}, {}
                    self.error = f"the key manifest {self.manifest} is not usable: {exc}"
            if self.error:
                raise SigningError(self.error)

    def load(self):
        with open(self.manifest, encoding="utf-8") as handle:
            manifest = json.load(handle)
        self.provider_domain = manifest["provider_domain"]
        directory = os.path.dirname(self.manifest)
        keys, broken = {}, {}
        for entry in manifest["keys"]:
            if entry["state"] != "active":
                continue
            domain, selector, algorithm = entry["domain"], entry["selector"], entry["algorithm"]
            if domain in broken:
                continue
            if any(key.algorithm == algorithm for key in keys.get(domain, ())):
                broken[domain] = f"{domain}: two active {algorithm} keys in the manifest"
                continue
            try:
                with open(os.path.join(directory, entry["file"]), "rb") as handle:
                    pem = handle.read()
                keys.setdefault(domain, []).append(Key.load(domain, selector, algorithm, pem))
            except OSError as exc:
                broken[domain] = f"{domain} {selector}: the key file {entry['file']} cannot be read: {exc.strerror}"
            except SigningError as exc:
                broken[domain] = str(exc)
        for domain in broken:
            keys.pop(domain, None)
        # RSA first: the order receivers that know only RSA meet them in does not matter, the log's does.
        self.keys = {
            domain: sorted(found, key=lambda key: ALGORITHMS.index(key.algorithm)) for domain, found in keys.items()
        }
        self.broken = broken

    def signing_keys(self, from_domain):
        """The keys that sign a message whose From header's domain is from_domain
        (None when it cannot be read); SigningError when none can."""
        self.current()
        with self.lock:
            usable = set(self.keys) | set(self.broken)
            domain = signing_domain(from_domain, usable, self.provider_domain)
            if domain in self.broken:
                raise SigningError(self.broken[domain])
            if domain not in self.keys:
                raise SigningError(f"{domain} has no active signing key")
            return self.keys[domain]
