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
parent) when it has an active key of each of its algorithms and the From check
judged that From for the message's login, else those of the provider's domain
(a validated address elsewhere, a hosted domain whose records are not yet seen,
a login that may send as anyone). No active key for either, or a key file that cannot be read, is a
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
        # The domains with an active key of each of their algorithms: those a From may sign as.
        self.complete = set()
        self.error = "no manifest read yet"
        self.loaded_at = 0.0
        # One thread reads a changed manifest and its keys (loading an RSA key
        # checks it: milliseconds, more on a busy host) while the others go on
        # signing with the keys read before; a message those keys cannot sign
        # (none read yet, or none active for its domain, as on a first install
        # whose keys have just been activated) waits for the read instead of
        # being deferred.
        self.loading = False
        self.loaded = threading.Condition(self.lock)

    # A key file that could not be read is tried again this often (seconds),
    # so that mail flows again once the operator fixes it, manifest unchanged.
    RETRY = 1.0
    # How long a message the keys read before cannot sign waits for the read
    # under way (seconds): below the milter's deadline.
    LOAD_WAIT = 3.0

    def fresh(self):
        """True when the keys read last are the ones to sign with: the manifest
        unchanged and nothing to retry, so current() will not read key files.
        A stat, no read: the milter signs on its loop only then."""
        try:
            seen = file_identity(self.manifest)
        except OSError:
            return False
        with self.lock:
            return not self.due(seen) and not self.loading

    def due(self, seen):
        """A read is due: the manifest (seen: its identity now) changed, or a key or the
        manifest could not be read RETRY seconds ago. The lock held."""
        retry = (self.broken or self.error) and time.monotonic() - self.loaded_at >= self.RETRY
        return seen != self.seen or retry

    def read_done(self):
        """Wait, the lock held, for the read under way (at most LOAD_WAIT)."""
        self.loaded.wait_for(lambda: not self.loading, timeout=self.LOAD_WAIT)

    def current(self):
        """Read the manifest again if it changed; SigningError if it cannot be read."""
        try:
            seen = file_identity(self.manifest)
        except OSError as exc:
            raise SigningError(f"the key manifest {self.manifest} cannot be read: {exc.strerror}") from None
        with self.lock:
            stale = self.due(seen) and not self.loading
            if stale:
                self.loading = True
        if stale:
            loaded, error = ({}, {}, set(), None), "the key manifest was not read"
            try:
                loaded, error = self.load(), None
            except Exception as exc:
                error = f"the key manifest {self.manifest} is not usable: {exc!r}"
            finally:
                with self.lock:
                    self.keys, self.broken, self.complete, self.provider_domain = loaded
                    self.seen, self.loaded_at, self.error, self.loading = seen, time.monotonic(), error, False
                    self.loaded.notify_all()
        # Meanwhile another thread may be reading a newer manifest: these keys are the last read.
        with self.lock:
            if self.error and self.loading:
                self.read_done()
            if self.error:
                raise SigningError(self.error)

    def load(self):
        """(keys, broken, complete, provider domain) as the manifest and its files have them."""
        with open(self.manifest, encoding="utf-8") as handle:
            manifest = json.load(handle)
        provider_domain = manifest["provider_domain"]
        directory = os.path.dirname(self.manifest)
        keys, broken = {}, {}
        # A From's domain signs only with an active key of every algorithm it has
        # keys for (its RSA key pending and Ed25519 active: most receivers would
        # see no signature they check), else the provider's domain signs.
        algorithms = {}
        for entry in manifest["keys"]:
            algorithms.setdefault(entry["domain"], set()).add(entry["algorithm"])
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
        complete = {domain for domain in keys if {key.algorithm for key in keys[domain]} == algorithms[domain]}
        # RSA first: the order receivers that know only RSA meet them in does not matter, the log's does.
        ordered = {
            domain: sorted(found, key=lambda key: ALGORITHMS.index(key.algorithm)) for domain, found in keys.items()
        }
        return ordered, broken, complete, provider_domain

    def signing_keys(self, from_domain):
        """The keys that sign a message whose From header's domain is from_domain
        (None when it cannot be read); SigningError when none can."""
        self.current()
        with self.lock:
            try:
                return self.chosen(from_domain)
            except SigningError:
                if not self.loading:
                    raise
            # The keys read before cannot sign it, and a newer manifest is being read.
            self.read_done()
            if self.error:
                raise SigningError(self.error)
            return self.chosen(from_domain)

    def chosen(self, from_domain):
        """signing_keys() on the keys read last, the lock held."""
        # A From's domain signs only with a key of each of its algorithms; the provider's
        # signs with what it has (an algorithm added later waits for its record meanwhile).
        domain = signing_domain(from_domain, self.complete | set(self.broken), self.provider_domain)
        if domain in self.broken:
            raise SigningError(self.broken[domain])
        if domain not in self.keys:
            raise SigningError(f"{domain} has no active signing key")
        return self.keys[domain]
