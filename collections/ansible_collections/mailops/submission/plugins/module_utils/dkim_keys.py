# Copyright: smtp-submission developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The DKIM keys' life, once, for the two places that keep keys: the
``dkim_keys`` module (keys made on the host, the default) and its action
plugin (keys made once on the controller, in a vault-encrypted key store,
for a fleet whose MTAs all sign with the same keys).

Both check the options with ``problems``, read and write the same manifest
(``keys.json``: public data only), plan with ``dkim_rules.plan_keys`` through
``KeyRun``, make keys with ``generate`` and look records up with
``Published``. Pure Python but for cryptography (when a key is made) and
dnspython (when a record is looked up), both imported when needed.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json

from ansible_collections.mailops.submission.plugins.module_utils.dkim_rules import (
    MIN_RETIRE_DAYS,
    MIN_RSA_BITS,
    DkimRuleError,
    KeyEntry,
    KeyPolicy,
    key_name,
    key_record,
    plan_keys,
    record_name,
)
from ansible_collections.mailops.submission.plugins.module_utils.dns_lookup import LookupFailed, Resolver
from ansible_collections.mailops.submission.plugins.module_utils.dns_name import DnsNameError, dns_name

MANIFEST = "keys.json"

# The options both keep, as AnsibleModule's argument_spec.
OPTIONS = {
    "provider_domain": {"type": "str", "required": True},
    "domains": {"type": "list", "elements": "str", "default": []},
    "algorithms": {
        "type": "list",
        "elements": "str",
        "choices": ["rsa-sha256", "ed25519-sha256"],
        "default": ["rsa-sha256", "ed25519-sha256"],
    },
    "rsa_bits": {"type": "int", "default": 2048},
    "rotation_days": {"type": "int", "default": 180},
    "retire_days": {"type": "int", "default": 7},
    "activate": {"type": "str", "choices": ["published", "force"], "default": "published"},
    "emergency_rotation": {"type": "str", "default": "", "no_log": False},
    "today": {"type": "str"},
    "dns_timeout": {"type": "float", "default": 5},
    "nameservers": {"type": "list", "elements": "str"},
    "port": {"type": "int", "default": 53},
}


class ManifestError(ValueError):
    """A manifest that cannot be read (not JSON, a key without its fields)."""


def problems(params):
    """(what is wrong with the options, each naming the value; the domains checked, provider first)."""
    found = []
    names = []
    for value in [params["provider_domain"], *params["domains"]]:
        try:
            names.append(dns_name(value))
        except DnsNameError as exc:
            found.append(str(exc))
    if len(set(names)) != len(names):
        found.append(f"a domain is listed twice (or is the provider's): {sorted(params['domains'])}")
    for name in names[1:]:
        try:
            key_name(name, "rsa2", names[0])
        except DkimRuleError as exc:
            found.append(str(exc))
    if params["rsa_bits"] < MIN_RSA_BITS:
        found.append(f"rsa_bits {params['rsa_bits']}: RSA keys have {MIN_RSA_BITS} bits at least")
    if params["retire_days"] < MIN_RETIRE_DAYS:
        found.append(f"retire_days {params['retire_days']}: a replaced key stays published {MIN_RETIRE_DAYS} days")
    if params["rotation_days"] <= params["retire_days"]:
        found.append(f"rotation_days {params['rotation_days']} must be more than retire_days {params['retire_days']}")
    if not params["algorithms"]:
        found.append("algorithms: at least one")
    if params["today"]:
        try:
            datetime.date.fromisoformat(params["today"])
        except ValueError:
            found.append(f"today {params['today']!r} is not a date (YYYY-MM-DD)")
    return found, names


class Manifest:
    """What keys.json holds: the provider domain, the last emergency label, the keys."""

    def __init__(self, provider=None, token="", entries=None):
        self.provider, self.token, self.entries = provider, token, list(entries or [])

    @classmethod
    def parse(cls, text):
        """The manifest in text; ManifestError naming what is wrong."""
        try:
            data = json.loads(text)
            fields = set(KeyEntry.__dataclass_fields__)
            entries = [
                KeyEntry(**{name: value for name, value in one.items() if name in fields}) for one in data["keys"]
            ]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ManifestError(str(exc)) from None
        return cls(data.get("provider_domain"), data.get("emergency_rotation", ""), entries)

    @classmethod
    def read(cls, path):
        """The manifest at path; an empty one when there is none yet."""
        try:
            with open(path, encoding="utf-8") as handle:
                return cls.parse(handle.read())
        except FileNotFoundError:
            return cls()

    def text(self):
        data = {
            "provider_domain": self.provider,
            "emergency_rotation": self.token,
            "keys": [vars(e) for e in self.entries],
        }
        return json.dumps(data, indent=1, sort_keys=True) + "\n"


def public_key(private):
    """The p= value: DER SubjectPublicKeyInfo for RSA, the 32 raw octets for Ed25519 (RFC 8463)."""
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: PLC0415

    if isinstance(private, rsa.RSAPrivateKey):
        data = private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    else:
        data = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(data).decode()


def public_key_of_pem(pem):
    """The p= value of a private key in PEM (a key store's file checked against its manifest)."""
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415

    return public_key(serialization.load_pem_private_key(pem, password=None))


def generate(entry, rsa_bits):
    """A new private key (PEM, PKCS#8) for entry; fills in its public key and file name."""
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa  # noqa: PLC0415

    if entry.algorithm == "rsa-sha256":
        private = rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
    else:
        private = ed25519.Ed25519PrivateKey.generate()
    entry.public = public_key(private)
    # The public key's fingerprint in the name: a slot used again never overwrites a key still in use.
    fingerprint = hashlib.sha256(entry.public.encode()).hexdigest()[:12]
    entry.file = f"{entry.domain}/{entry.selector}.{fingerprint}.pem"
    return private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def generate_all(entries, rsa_bits):
    """{file name: PEM} of a new key for each entry (each entry's public key and file filled in)."""
    made = {}
    for entry in entries:
        pem = generate(entry, rsa_bits)
        made[entry.file] = pem
    return made


class Published:
    """Whether a pending key's record is seen: its name's TXT holds p= with the key."""

    def __init__(self, timeout, nameservers=None, port=53):
        self.timeout = timeout
        self.nameservers, self.port = nameservers, port
        self.resolver = None
        self.why = []

    def __call__(self, entry):
        if not entry.public:
            return False
        name = record_name(entry.domain, entry.selector)
        try:
            if self.resolver is None:
                self.resolver = Resolver(self.timeout, self.nameservers, self.port)
            texts = self.resolver.values(name, "TXT")
        except LookupFailed as exc:
            self.why.append(f"{entry.label()}: no answer for {name} ({exc})")
            return False
        for text in texts:
            tags = dict(part.strip().partition("=")[::2] for part in text.split(";") if "=" in part)
            if "".join(tags.get("p", "").split()) == entry.public:
                return True
        self.why.append(f"{entry.label()}: {name} has no TXT record with its key" + (f" ({texts})" if texts else ""))
        return False


def key_view(entry, provider_domain):
    """A key's public data and what to publish for it."""
    view = {
        "domain": entry.domain,
        "selector": entry.selector,
        "algorithm": entry.algorithm,
        "state": entry.state,
        "created": entry.created,
        "record": {
            "name": key_name(entry.domain, entry.selector, provider_domain),
            "type": "TXT",
            "value": key_record(entry.algorithm, entry.public) if entry.public else "(made when the task runs)",
        },
    }
    if entry.activated:
        view["activated"] = entry.activated
    if entry.retire_on:
        view["retire_on"] = entry.retire_on
    if entry.domain != provider_domain:
        view["cname"] = {"name": record_name(entry.domain, entry.selector), "target": view["record"]["name"]}
    return view


class KeyRun:
    """One run of the rules over a manifest: the plan, and what the module or the key store then writes.

    params: the OPTIONS' values; names: problems()'s checked domains (provider first); manifest: the
    Manifest as kept. The plan asks DNS (published) for pending keys; nothing is generated or written here.
    """

    def __init__(self, params, names, manifest):
        self.provider = names[0]
        self.before = manifest
        entries = manifest.entries
        # Another provider domain moves every key record: every key is replaced (the old ones are removed).
        moved = entries if manifest.provider not in (None, self.provider) else []
        if moved:
            entries = []
        today = datetime.date.fromisoformat(params["today"]) if params["today"] else datetime.date.today()
        # A label only replaces keys that exist: on a new host it is recorded, nothing is forced.
        label = params["emergency_rotation"]
        emergency = bool(entries) and bool(label) and label != manifest.token
        policy = KeyPolicy(
            today, params["rotation_days"], params["retire_days"], params["activate"] == "force", emergency
        )
        self.published = Published(params["dns_timeout"], params["nameservers"], params["port"])
        wanted = [(domain, algorithm) for domain in names for algorithm in params["algorithms"]]
        self.plan = plan_keys(entries, wanted, policy, self.published)
        self.plan.removed += moved
        self.after = Manifest(self.provider, label or manifest.token, self.plan.entries)
        self.changed = self.plan.changed or self.after.token != manifest.token or manifest.provider != self.provider

    def result(self, diff):
        """The module's result: public data only."""
        plan = self.plan
        result = {
            "changed": self.changed,
            "keys": [key_view(entry, self.provider) for entry in plan.entries],
            "created": [entry.label() for entry in plan.created],
            "activated": [entry.label() for entry in plan.activated],
            "retiring": [entry.label() for entry in plan.retiring],
            "removed": [entry.label() for entry in plan.removed],
            "unpublished": self.published.why,
            "waiting": [
                f"{entry.label()}: its rotation waits for its other slot's key to go" for entry in plan.waiting
            ],
        }
        if diff:
            before = "".join(entry.line() for entry in self.before.entries)
            after = "".join(entry.line() for entry in plan.entries)
            result["diff"] = {"before": before, "after": after, "before_header": MANIFEST, "after_header": MANIFEST}
        return result
