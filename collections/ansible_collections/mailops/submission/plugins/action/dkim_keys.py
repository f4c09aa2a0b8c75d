# Copyright: smtp-submission developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The dkim_keys action: with ``store``, the keys are kept once, on the
controller, and every host gets the same (a fleet's MTAs sign alike).

The store is a directory: ``keys.json`` (the manifest, public data only, as
the hosts keep it) and one file a private key, ``DOMAIN/NAME.pem.vault``,
encrypted with the play's vault secret. A run plans with the same rules as
the module (module_utils.dkim_keys), under a lock on the store, so hosts that
run at the same time do not each make a key: the first makes it, the others
read it. New keys are encrypted before they are written; the private keys go
to the host only as the module's no_log option. Without ``store`` the module
runs as it is (keys made on the host).
"""

from __future__ import annotations

import fcntl
import os
import tempfile

from ansible.errors import AnsibleError
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.plugins.action import ActionBase
from ansible_collections.mailops.submission.plugins.module_utils.dkim_keys import (
    MANIFEST,
    OPTIONS,
    KeyRun,
    Manifest,
    ManifestError,
    generate_all,
    problems,
    public_key_of_pem,
)

SPEC = {
    "directory": {"type": "path", "required": True},
    "group": {"type": "str", "required": True},
    "store": {"type": "path"},
    **OPTIONS,
}
SUFFIX = ".vault"


class StoreError(Exception):
    """The store cannot be read or written as it must be; the message names the file."""


class KeyStore:
    """The directory on the controller, through the play's vault."""

    def __init__(self, path, vault, create=True):
        self.path = path
        self.vault = vault
        # Check mode makes nothing: a store that does not exist yet is read as empty, with no lock.
        self.create = create
        self.lock = None

    def __enter__(self):
        if self.create:
            os.makedirs(self.path, mode=0o700, exist_ok=True)
        if os.path.isdir(self.path):
            self.lock = open(os.path.join(self.path, ".lock"), "a")
            fcntl.flock(self.lock, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        if self.lock is not None:
            fcntl.flock(self.lock, fcntl.LOCK_UN)
            self.lock.close()

    def manifest(self):
        try:
            return Manifest.read(os.path.join(self.path, MANIFEST))
        except ManifestError as exc:
            raise StoreError(f"the DKIM key store: {self.path}/{MANIFEST} cannot be read: {exc}") from None

    def private_keys(self, manifest):
        """{file: PEM} for each key of manifest, decrypted in memory and checked against its public key."""
        keys = {}
        for entry in manifest.entries:
            if not entry.file:
                continue
            name = os.path.join(self.path, entry.file + SUFFIX)
            try:
                with open(name, "rb") as handle:
                    pem = self.vault.decrypt(handle.read())
            except FileNotFoundError:
                raise StoreError(f"{name} is missing: the manifest names it") from None
            except AnsibleError as exc:
                raise StoreError(f"{name} cannot be decrypted with the play's vault secrets: {exc}") from None
            try:
                matches = public_key_of_pem(pem) == entry.public
            except ValueError:
                matches = False
            if not matches:
                raise StoreError(f"{name} does not hold the key whose public key the manifest lists")
            keys[entry.file] = pem
        return keys

    def write(self, name, data, mode=0o600):
        """data into the store's name by a rename."""
        path = os.path.join(self.path, name)
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=os.path.dirname(path), prefix=f".{os.path.basename(name)}.")
        try:
            with os.fdopen(handle, "wb") as out:
                os.fchmod(out.fileno(), mode)
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, path)
        finally:
            if os.path.exists(temporary):
                os.unlink(temporary)

    def keep(self, key_run, new_keys):
        """New keys (encrypted), then the manifest, then the removed keys' files go."""
        if new_keys and not self.vault.secrets:
            raise StoreError(
                "a new key would be written in clear: run the play with a vault secret "
                "(--vault-id, --ask-vault-pass or ANSIBLE_VAULT_PASSWORD_FILE)"
            )
        for name, pem in new_keys.items():
            self.write(name + SUFFIX, self.vault.encrypt(pem))
        self.write(MANIFEST, key_run.after.text().encode(), mode=0o644)
        for entry in key_run.plan.removed:
            if entry.file and os.path.exists(os.path.join(self.path, entry.file + SUFFIX)):
                os.unlink(os.path.join(self.path, entry.file + SUFFIX))


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = True

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        args = dict(self._task.args)
        if not args.get("store"):
            result.update(self._execute_module(module_args=args, task_vars=task_vars))
            return result
        try:
            result.update(self._with_store(args, task_vars))
        except StoreError as exc:
            result.update(failed=True, msg=str(exc))
        return result

    def _with_store(self, args, task_vars):
        """The store's plan kept, then the host given the store's keys; StoreError on what stops it."""
        validated = ArgumentSpecValidator(SPEC).validate(args)
        if validated.error_messages:
            raise StoreError("; ".join(validated.error_messages))
        params = validated.validated_parameters
        found, names = problems(params)
        if found:
            raise StoreError("; ".join(found))
        check_mode = self._task.check_mode
        try:
            with KeyStore(os.path.expanduser(params["store"]), self._loader._vault, not check_mode) as store:
                key_run = KeyRun(params, names, store.manifest())
                private = store.private_keys(key_run.before)
                if key_run.changed and not check_mode:
                    new_keys = generate_all(key_run.plan.created, params["rsa_bits"])
                    store.keep(key_run, new_keys)
                    private.update(new_keys)
        except ImportError as exc:
            raise StoreError(f"a library the key store needs on the controller is missing: {exc}") from None
        planned = key_run.result(self._task.diff)
        planned["store_changed"] = key_run.changed
        if key_run.changed and check_mode:
            # The keys the plan makes do not exist yet: the host is not asked.
            return planned
        manifest = key_run.before if check_mode else key_run.after
        host_args = {name: args[name] for name in ("directory", "group", "provider_domain", "domains") if name in args}
        host_args["install"] = {
            "manifest": manifest.text(),
            "private_keys": {entry.file: private[entry.file].decode() for entry in manifest.entries if entry.file},
        }
        host = self._execute_module(
            module_name="mailops.submission.dkim_keys", module_args=host_args, task_vars=task_vars
        )
        if host.get("failed"):
            return host
        planned.update(
            changed=key_run.changed or host["changed"], installed=host["installed"], uninstalled=host["removed"]
        )
        if not key_run.changed and host.get("diff"):
            planned["diff"] = host["diff"]
        return planned
