#!/usr/bin/python
# Copyright: smtp-submission developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: dkim_keys
short_description: Keep the DKIM signing keys of the provider's domain and its hosted domains, and rotate them
version_added: 0.5.0
description:
  - Keeps, in O(directory), an RSA and an Ed25519 key per domain (the provider's and each hosted domain), the
    private keys in files readable by root and O(group) only, and a manifest C(keys.json) (public data only) that
    the header-From milter reads to sign.
  - A key is C(pending) when made, C(active) (it signs) once its TXT record is found in DNS with its public key,
    or at once with O(activate=force); the key it replaces stays C(retiring) (published, not signing) for
    O(retire_days), then its file is removed. A key O(rotation_days) old is replaced by a new key in the other
    selector slot of its algorithm (C(rsa1)/C(rsa2), C(ed1)/C(ed2)).
  - A new value of O(emergency_rotation) replaces every key at once, active at once (a key that leaked).
  - Every option is checked before anything is read or written; a bad value fails the task, naming it.
  - Key material never appears in the result, the diff or the log.
author:
  - smtp-submission developers
attributes:
  check_mode:
    support: full
    description: Plans every change (DNS is asked), generates and writes nothing.
  diff_mode:
    support: full
    description: One line a key (domain, selector, algorithm, creation date, state), before and after; never a key.
  platform:
    platforms: posix
requirements:
  - cryptography (Debian's C(python3-cryptography)) on the host.
  - dnspython (Debian's C(python3-dnspython)) when a pending key waits for its record.
options:
  directory:
    description: The keys' directory, made C(root:group) mode 2750; the manifest is C(keys.json) in it.
    type: path
    required: true
  group:
    description: The group that may read the keys (the milter's).
    type: str
    required: true
  provider_domain:
    description: The provider's domain. Its keys' records are in its zone; so are the hosted domains' (CNAME targets).
    type: str
    required: true
  domains:
    description: The hosted domains that sign with keys of their own (their From is aligned).
    type: list
    elements: str
    default: []
  algorithms:
    description: The algorithms each domain signs with.
    type: list
    elements: str
    choices: [rsa-sha256, ed25519-sha256]
    default: [rsa-sha256, ed25519-sha256]
  rsa_bits:
    description: The size of new RSA keys; 2048 at least.
    type: int
    default: 2048
  rotation_days:
    description: A key this many days old is replaced by a new one (in the other slot).
    type: int
    default: 180
  retire_days:
    description: Days a replaced key stays published after the new one signs (mail in flight); 7 at least.
    type: int
    default: 7
  activate:
    description:
      - V(published) makes a pending key active once its record is found in DNS with its key.
      - V(force) also makes a pending key active now where its domain and algorithm have no active key yet, for
        a first install before the records are published; receivers fail the signatures until they are. A
        rotation's new key always waits for its record.
    type: str
    choices: [published, force]
    default: published
  emergency_rotation:
    description:
      - A label (a date, a ticket); a value other than the last one replaces every key now, active at once (a key
        that leaked). The label is kept in the manifest, so the same value does nothing the next time. Empty does
        nothing.
    type: str
    default: ""
  today:
    description: The date the rules count from (YYYY-MM-DD), for tests; default today.
    type: str
extends_documentation_fragment:
  - mailops.submission.dns
"""

EXAMPLES = r"""
- name: Keep the DKIM keys of runbox.com and its hosted domains
  mailops.submission.dkim_keys:
    directory: /etc/dkim
    group: from-check
    provider_domain: runbox.com
    domains: [hosted.example]
  register: dkim

- name: Replace every key now (a key leaked); the records must then be published again
  mailops.submission.dkim_keys:
    directory: /etc/dkim
    group: from-check
    provider_domain: runbox.com
    domains: [hosted.example]
    emergency_rotation: "2026-12-07 key leak"
    activate: force
"""

RETURN = r"""
keys:
  description: Each key (public data), with the TXT record to publish and, for a hosted domain, its CNAME.
  returned: always
  type: list
  elements: dict
  sample:
    - domain: hosted.example
      selector: rsa1
      algorithm: rsa-sha256
      state: active
      created: "2026-12-07"
      record: {name: rsa1.hosted.example._domainkey.runbox.com, type: TXT, value: "v=DKIM1; k=rsa; p=MIIB..."}
      cname: {name: rsa1._domainkey.hosted.example, target: rsa1.hosted.example._domainkey.runbox.com}
created:
  description: The keys made (domain, selector).
  returned: always
  type: list
  elements: str
activated:
  description: The keys that became active.
  returned: always
  type: list
  elements: str
retiring:
  description: The keys that stopped signing and stay published until their date.
  returned: always
  type: list
  elements: str
removed:
  description: The keys removed (their records may go).
  returned: always
  type: list
  elements: str
unpublished:
  description: Pending keys whose record is not found (or not with their key), and why.
  returned: always
  type: list
  elements: str
waiting:
  description: Active keys due for rotation whose other slot still holds a retiring key.
  returned: always
  type: list
  elements: str
"""

import base64
import datetime
import hashlib
import json
import os
import tempfile

from ansible.module_utils.basic import AnsibleModule
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


def problems(params):
    """What is wrong with the options, each naming the value; [] when nothing is."""
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


def read_manifest(path):
    """(provider domain, emergency token, [KeyEntry]) as the manifest holds them; nothing yet: (None, '', [])."""
    try:
        with open(path, encoding="utf-8") as handle:
            manifest = json.load(handle)
    except FileNotFoundError:
        return None, "", []
    fields = set(KeyEntry.__dataclass_fields__)
    entries = [
        KeyEntry(**{name: value for name, value in entry.items() if name in fields}) for entry in manifest["keys"]
    ]
    return manifest.get("provider_domain"), manifest.get("emergency_rotation", ""), entries


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


def write_file(directory, name, data, gid, mode=0o640):
    """data into directory/name, owned root:gid with mode, by a rename: a reader sees the old file or the new."""
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(name)}.")
    try:
        os.fchmod(handle, mode)
        os.fchown(handle, 0 if os.geteuid() == 0 else -1, gid)
        os.write(handle, data)
        os.fsync(handle)
        os.close(handle)
        handle = None
        os.replace(temporary, os.path.join(directory, name))
    finally:
        if handle is not None:
            os.close(handle)
        if os.path.exists(temporary):
            os.unlink(temporary)


def sync_directory(path):
    handle = os.open(path, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


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


def apply(module, params, names, plan, token):
    """Writes the new keys, then the manifest, then removes the files of removed keys."""
    import grp  # noqa: PLC0415

    directory = params["directory"]
    gid = grp.getgrnam(params["group"]).gr_gid
    os.umask(0o027)
    os.makedirs(directory, exist_ok=True)
    os.chown(directory, 0 if os.geteuid() == 0 else -1, gid)
    os.chmod(directory, 0o2750)  # noqa: S103 - setgid, so that new files get the group; no one else reads
    for entry in plan.created:
        pem = generate(entry, params["rsa_bits"])
        subdirectory = os.path.join(directory, entry.domain)
        os.makedirs(subdirectory, mode=0o2750, exist_ok=True)
        os.chown(subdirectory, 0 if os.geteuid() == 0 else -1, gid)
        write_file(directory, entry.file, pem, gid)
    # The new files' names are on disk before the manifest names them.
    for subdirectory in {os.path.join(directory, entry.domain) for entry in plan.created}:
        sync_directory(subdirectory)
    manifest = {
        "provider_domain": names[0],
        "emergency_rotation": token,
        "keys": [vars(entry) for entry in plan.entries],
    }
    write_file(directory, MANIFEST, (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode(), gid)
    for entry in plan.removed:
        if entry.file:
            path = os.path.join(directory, entry.file)
            if os.path.exists(path):
                os.unlink(path)


def run(module):
    params = module.params
    found, names = problems(params)
    if found:
        return {"changed": False, "failed": True, "msg": "; ".join(found)}
    directory = params["directory"]
    try:
        provider, token, entries = read_manifest(os.path.join(directory, MANIFEST))
    except (ValueError, KeyError, TypeError) as exc:
        return {"changed": False, "failed": True, "msg": f"{directory}/{MANIFEST} cannot be read: {exc}"}
    # Another provider domain moves every key record: every key is replaced (the old ones are removed).
    moved = entries if provider not in (None, names[0]) else []
    if moved:
        entries = []
    today = datetime.date.fromisoformat(params["today"]) if params["today"] else datetime.date.today()
    # A label only replaces keys that exist: on a new host it is recorded, nothing is forced.
    emergency = bool(entries) and bool(params["emergency_rotation"]) and params["emergency_rotation"] != token
    policy = KeyPolicy(today, params["rotation_days"], params["retire_days"], params["activate"] == "force", emergency)
    before = "".join(entry.line() for entry in entries + moved)
    published = Published(params["dns_timeout"], params["nameservers"], params["port"])
    wanted = [(domain, algorithm) for domain in names for algorithm in params["algorithms"]]
    plan = plan_keys(entries, wanted, policy, published)
    plan.removed += moved
    new_token = params["emergency_rotation"] or token
    changed = plan.changed or new_token != token or provider != names[0]
    if changed and not module.check_mode:
        apply(module, params, names, plan, new_token)
    result = {
        "changed": changed,
        "keys": [key_view(entry, names[0]) for entry in plan.entries],
        "created": [entry.label() for entry in plan.created],
        "activated": [entry.label() for entry in plan.activated],
        "retiring": [entry.label() for entry in plan.retiring],
        "removed": [entry.label() for entry in plan.removed],
        "unpublished": published.why,
        "waiting": [f"{entry.label()}: its rotation waits for its other slot's key to go" for entry in plan.waiting],
    }
    if module._diff:
        after = "".join(entry.line() for entry in plan.entries)
        result["diff"] = {"before": before, "after": after, "before_header": MANIFEST, "after_header": MANIFEST}
    return result


def main():
    module = AnsibleModule(
        argument_spec={
            "directory": {"type": "path", "required": True},
            "group": {"type": "str", "required": True},
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
        },
        supports_check_mode=True,
    )
    try:
        result = run(module)
    except ImportError as exc:
        result = {"changed": False, "failed": True, "msg": f"a library the keys need is missing: {exc}"}
    except (OSError, KeyError) as exc:
        result = {"changed": False, "failed": True, "msg": f"the keys in {module.params['directory']}: {exc}"}
    if result.get("failed"):
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
