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
  - With O(store), the keys are made once, on the controller, in a key store whose private keys are
    vault-encrypted files, and every host gets the same keys (a fleet's MTAs); the rules are the same. The
    controller then asks DNS for pending keys' records, and needs cryptography and dnspython (the project's venv
    has both) and a vault secret (C(--vault-id), C(--ask-vault-pass) or C(ANSIBLE_VAULT_PASSWORD_FILE)).
  - Every option is checked before anything is read or written; a bad value fails the task, naming it.
  - Key material never appears in the result, the diff or the log.
author:
  - smtp-submission developers
attributes:
  action:
    support: full
    description: The action plugin keeps O(store) on the controller; without O(store) it runs the module.
  check_mode:
    support: full
    description: Plans every change (DNS is asked), generates and writes nothing, neither on the host nor in O(store).
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
  store:
    description:
      - A directory on the controller that keeps the keys for every host (its own manifest C(keys.json) and one
        vault-encrypted file a private key, C(DOMAIN/SELECTOR.FINGERPRINT.pem.vault)); made mode 0700 when missing.
        Hosts that run the task at the same time share it (a lock), so the first makes a key and the others get it.
      - Keep it with the inventory, under version control if you like: nothing in it is in clear but public keys.
      - Unset, each host keeps keys of its own.
    type: path
  install:
    description: Set by the action plugin when O(store) is given (the store's manifest and private keys); not for
      direct use.
    type: dict
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

- name: Keep one set of keys for every MTA of a fleet, made on the controller (run with a vault secret)
  mailops.submission.dkim_keys:
    directory: /etc/dkim
    group: from-check
    provider_domain: runbox.com
    domains: [hosted.example]
    store: "{{ inventory_dir }}/files/dkim"
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
installed:
  description: With O(store), the keys (domain/selector) this host got from the store.
  returned: with O(store)
  type: list
  elements: str
uninstalled:
  description: With O(store), the key files (domain/selector) this host held and the store no longer names.
  returned: with O(store)
  type: list
  elements: str
store_changed:
  description: With O(store), whether the store changed (a key made, activated, retired or removed).
  returned: with O(store)
  type: bool
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

import grp
import os
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.mailops.submission.plugins.module_utils.dkim_keys import (
    MANIFEST,
    OPTIONS,
    KeyRun,
    Manifest,
    ManifestError,
    generate_all,
    key_view,
    problems,
)


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


def prepare_directory(directory, gid):
    os.umask(0o027)
    os.makedirs(directory, exist_ok=True)
    os.chown(directory, 0 if os.geteuid() == 0 else -1, gid)
    os.chmod(directory, 0o2750)  # noqa: S103 - setgid, so that new files get the group; no one else reads


def write_keys(directory, gid, files):
    """files: {relative name: PEM}; each written by a rename, then their directories synced, so that the
    names are on disk before the manifest names them."""
    subdirectories = set()
    for name, pem in files.items():
        subdirectory = os.path.join(directory, os.path.dirname(name))
        os.makedirs(subdirectory, mode=0o2750, exist_ok=True)
        os.chown(subdirectory, 0 if os.geteuid() == 0 else -1, gid)
        write_file(directory, name, pem, gid)
        subdirectories.add(subdirectory)
    for subdirectory in subdirectories:
        sync_directory(subdirectory)


def generate_here(module, params, key_run):
    """Keys made on the host: the new keys, then the manifest, then the removed keys' files go."""
    directory = params["directory"]
    gid = grp.getgrnam(params["group"]).gr_gid
    prepare_directory(directory, gid)
    write_keys(directory, gid, generate_all(key_run.plan.created, params["rsa_bits"]))
    write_file(directory, MANIFEST, key_run.after.text().encode(), gid)
    for entry in key_run.plan.removed:
        if entry.file:
            path = os.path.join(directory, entry.file)
            if os.path.exists(path):
                os.unlink(path)


def key_files(directory):
    """The private key files under directory (DOMAIN/NAME.pem), by relative name."""
    found = set()
    for domain in os.listdir(directory) if os.path.isdir(directory) else []:
        path = os.path.join(directory, domain)
        if os.path.isdir(path) and not os.path.islink(path):
            found.update(f"{domain}/{name}" for name in os.listdir(path) if name.endswith(".pem"))
    return found


def install(module, params):
    """The store's keys, as the action plugin hands them over: this host gets exactly them."""
    directory = params["directory"]
    text = params["install"].get("manifest", "")
    pems = {name: pem.encode() for name, pem in (params["install"].get("private_keys") or {}).items()}
    try:
        manifest = Manifest.parse(text)
    except ManifestError as exc:
        return {"changed": False, "failed": True, "msg": f"the key store's manifest cannot be read: {exc}"}
    named = {entry.file for entry in manifest.entries if entry.file}
    if named != set(pems):
        return {
            "changed": False,
            "failed": True,
            "msg": f"the key store lacks keys its manifest names: {sorted(named - set(pems))}",
        }
    current = Manifest.read(os.path.join(directory, MANIFEST))
    stale = key_files(directory) - named
    differ = {}
    for name, pem in pems.items():
        try:
            with open(os.path.join(directory, name), "rb") as handle:
                same = handle.read() == pem
        except FileNotFoundError:
            same = False
        if not same:
            differ[name] = pem
    try:
        with open(os.path.join(directory, MANIFEST), encoding="utf-8") as handle:
            manifest_same = handle.read() == text
    except FileNotFoundError:
        manifest_same = False
    changed = bool(differ or stale or not manifest_same)
    if changed and not module.check_mode:
        gid = grp.getgrnam(params["group"]).gr_gid
        prepare_directory(directory, gid)
        write_keys(directory, gid, differ)
        write_file(directory, MANIFEST, text.encode(), gid)
        for name in stale:
            os.unlink(os.path.join(directory, name))
    result = {
        "changed": changed,
        "keys": [key_view(entry, manifest.provider) for entry in manifest.entries],
        "installed": sorted(name.rsplit(".", 2)[0] for name in differ),
        "removed": sorted(name.rsplit(".", 2)[0] for name in stale),
    }
    if module._diff:
        before = "".join(entry.line() for entry in current.entries)
        after = "".join(entry.line() for entry in manifest.entries)
        result["diff"] = {"before": before, "after": after, "before_header": MANIFEST, "after_header": MANIFEST}
    return result


def run(module):
    params = module.params
    found, names = problems(params)
    if found:
        return {"changed": False, "failed": True, "msg": "; ".join(found)}
    if params["install"] is not None:
        return install(module, params)
    if params["store"]:
        return {
            "changed": False,
            "failed": True,
            "msg": "store is kept by the dkim_keys action plugin, which did not run",
        }
    directory = params["directory"]
    try:
        manifest = Manifest.read(os.path.join(directory, MANIFEST))
    except ManifestError as exc:
        return {"changed": False, "failed": True, "msg": f"{directory}/{MANIFEST} cannot be read: {exc}"}
    key_run = KeyRun(params, names, manifest)
    if key_run.changed and not module.check_mode:
        generate_here(module, params, key_run)
    return key_run.result(module._diff)


def main():
    module = AnsibleModule(
        argument_spec={
            "directory": {"type": "path", "required": True},
            "group": {"type": "str", "required": True},
            **OPTIONS,
            "store": {"type": "path"},
            "install": {
                "type": "dict",
                "options": {
                    "manifest": {"type": "str", "required": True},
                    "private_keys": {"type": "dict", "required": True, "no_log": True},
                },
            },
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
