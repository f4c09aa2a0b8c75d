#!/usr/bin/python
# Copyright: smtp-submission developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: sender_allowlist
short_description: Manage a Postfix sender allowlist table (sender address to SASL logins)
version_added: 0.1.0
description:
  - Manages one table of sender addresses and the SASL logins allowed to use them, in the form
    Postfix's C(smtpd_sender_login_maps) reads, for C(reject_authenticated_sender_login_mismatch).
  - A key is C(local@domain) (that address; with C(recipient_delimiter = +) also C(local+tag@domain)) or
    C(@domain) (every address at the domain). A key may belong to several logins.
  - Keys and logins are validated and normalised first (lower case, IDN domains to their A-label, RFC 5321
    length limits). Whitespace, commas, control characters, C(%), C(!), C(:), source routes, quoted local
    parts, empty labels and trailing dots are refused. A bad entry fails the task, names the entry, and
    nothing is written.
  - When the resulting table equals the current one, nothing is written and no map is rebuilt.
    Otherwise the source file and the compiled map are replaced by renaming complete new files over
    them, so that Postfix never reads a half-built map and a failure midway leaves the previous table
    in force. Small changes to C(lmdb) and C(hash) maps are applied with C(postmap -i)/C(postmap -d) to a
    copy of the compiled map instead of a full rebuild.
  - Runs against the same table serialise on a lock, so concurrent runs do not lose each other's entries.
  - Postfix daemons notice a replaced map by themselves; no reload is needed.
  - With O(store) instead of O(path), it manages the same pairs in the validation service's SQLite store
    (role C(submission_validation)), where Postfix sees a change at the next lookup. Pairs it adds are marked
    as the inventory's. It removes a pair that a user validated by link only when an absent entry names it;
    O(exclusive) replaces the inventory's pairs and leaves the users' alone. All changes are one transaction;
    check mode rolls it back.
  - With O(database), it manages the same pairs, with the same rules, in the fleet's PostgreSQL database (role
    C(submission_database)), where every MTA of the fleet sees a change at its next lookup. It runs on the
    database host; pairs to add are loaded with C(COPY).
author:
  - smtp-submission developers
attributes:
  check_mode:
    support: full
    description: Computes the changes, counts and diff without writing anything.
  diff_mode:
    support: full
    description: The diff lists the pairs removed (before) and added (after), at most 1000 of each.
  platform:
    platforms: posix
requirements:
  - Postfix's C(postmap) on the target, with support for the chosen map type (Debian packages
    C(postfix-lmdb), C(postfix-cdb)).
  - With O(database), psycopg 3 (Debian's C(python3-psycopg)) on the database host.
  - For an internationalised domain, the C(idna) package (Debian's C(python3-idna)) on the target: IDNA 2008 / UTS 46.
options:
  path:
    description:
      - The table's source file. The compiled map is C(path) plus C(.lmdb), C(.db) or C(.cdb).
      - Its directory must exist.
      - Exactly one of O(path), O(store) and O(database) is required.
    type: path
  store:
    description:
      - The validation service's SQLite store, instead of a table file. It must exist with its schema (the
        service creates it). Keys are full addresses there; C(@domain) keys are refused.
      - O(type), O(incremental_limit), O(postfix_config_dir) and the file attributes do not apply.
    type: path
    version_added: 0.2.0
  database:
    description:
      - The fleet database's name, instead of a table file or a SQLite store; the module connects over the
        local socket (see O(login_user)). Its schema must be in place (M(mailops.submission.store_schema)).
      - Keys are full addresses there; C(@domain) keys are the accounts' (M(mailops.submission.fleet_accounts)).
      - O(login_user), O(login_unix_socket), O(port) and O(session_role) apply with it only.
    type: str
    version_added: 0.4.0
  entries:
    description:
      - Pairs to add (C(state=present)) or remove (C(state=absent)).
      - An absent entry without C(login) removes the sender key with all its logins.
    type: list
    elements: dict
    default: []
    suboptions:
      sender:
        description: A sender key, C(local@domain) or C(@domain).
        type: str
        required: true
      login:
        description:
          - The canonical SASL login (C(user@domain)) allowed to send as C(sender).
          - Required when O(entries[].state=present).
        type: str
      state:
        description: Whether the pair should be in the table.
        type: str
        choices: [present, absent]
        default: present
  src:
    description:
      - A file on the target with one C(sender login) pair a line, for bulk loads. Blank lines and lines
        starting with C(#) are skipped. Its pairs are added like present entries.
    type: path
  exclusive:
    description:
      - If C(true), the table holds exactly the present entries and the pairs of C(src); every other pair
        is removed.
      - With O(store), the pairs users validated by link stay; only the inventory's are replaced.
    type: bool
    default: false
  logins:
    description:
      - With O(store) or O(database) only, the logins that exist (every account's). Pairs of any other login
        are removed, the ones users validated by link included, so that a removed account's addresses go with
        it and a login reused later starts with none. A present entry for another login is an error.
      - Unset, no pair is removed for its login.
    type: list
    elements: str
    version_added: 0.3.0
  type:
    description: The Postfix lookup table type of the compiled map.
    type: str
    choices: [lmdb, hash, cdb]
    default: lmdb
  postfix_config_dir:
    description:
      - Postfix configuration directory that C(postmap) reads (C(postmap -c)). Default is Postfix's own.
    type: path
  incremental_limit:
    description:
      - Largest number of changed keys applied incrementally to a copy of an C(lmdb) or C(hash) map; larger
        changes rebuild the map from the source file.
    type: int
    default: 10000
extends_documentation_fragment:
  - ansible.builtin.files
  - mailops.submission.database
notes:
  - The source file starts with a comment that records a digest of the input and of the table, so that
    a repeated run with the same input recognises an unchanged table without parsing it. Do not edit the
    file by hand; a hand edit is noticed (the digest no longer matches) and the next run rewrites it.
  - Postfix tries, for a sender, the full address, then the address without its C(+tag), then C(@domain),
    and uses the logins of the first key that exists.
seealso:
  - name: Postfix smtpd_sender_login_maps
    description: How Postfix uses this table.
    link: https://www.postfix.org/postconf.5.html#smtpd_sender_login_maps
"""

EXAMPLES = r"""
- name: Allow alice to send as her alias, and bob as anything at his domain
  mailops.submission.sender_allowlist:
    path: /etc/postfix/submission/sender_logins_accounts
    entries:
      - sender: alice.smith@runbox.com
        login: alice@runbox.com
      - sender: "@hosted.example"
        login: bob@hosted.example

- name: Remove a validated external address from every login
  mailops.submission.sender_allowlist:
    path: /etc/postfix/submission/sender_logins_validated
    entries:
      - sender: alice.ext@gmail.example
        state: absent

- name: >-
    Seed the validation service's store with the inventory's external senders, keeping what users validated,
    except the pairs of a removed account
  mailops.submission.sender_allowlist:
    store: /var/lib/sender-validation/senders.sqlite
    entries:
      - sender: alice.ext@gmail.example
        login: alice@runbox.com
    exclusive: true
    logins: [alice@runbox.com, bob@hosted.example]

- name: On the fleet's database host, put the inventory's external senders in the fleet database
  mailops.submission.sender_allowlist:
    database: submission
    session_role: submission_owner
    entries:
      - sender: alice.ext@gmail.example
        login: alice@runbox.com
    exclusive: true
    logins: [alice@runbox.com, bob@hosted.example]

- name: Load a whole table from a file on the target, dropping every pair not in it
  mailops.submission.sender_allowlist:
    path: /etc/postfix/submission/sender_logins_validated
    src: /var/lib/validation/validated-senders.txt
    exclusive: true
    type: lmdb
    owner: root
    group: root
    mode: "0644"
"""

RETURN = r"""
added:
  description: Number of (sender, login) pairs added.
  returned: always
  type: int
  sample: 1
removed:
  description: Number of (sender, login) pairs removed.
  returned: always
  type: int
  sample: 0
pairs:
  description: Number of (sender, login) pairs in the table after the run.
  returned: always
  type: int
  sample: 3
keys:
  description: Number of sender keys in the table after the run.
  returned: always
  type: int
  sample: 3
map:
  description: Path of the compiled map.
  returned: when O(path) is given
  type: str
  sample: /etc/postfix/submission/sender_logins_accounts.lmdb
rebuild:
  description:
    - How the compiled map was updated. C(none); C(in-place) (one key changed, one postmap transaction on the live
      map); C(incremental) (a few keys, applied to a copy that replaces the map); C(full) (rebuilt).
  returned: always
  type: str
  sample: in-place
"""

import contextlib
import dataclasses
import fcntl
import gc
import hashlib
import os
import shutil
import sqlite3
import tempfile
import time

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.mailops.submission.plugins.module_utils import database_senders
from ansible_collections.mailops.submission.plugins.module_utils.bulk_load import (
    PARALLEL_MIN_BYTES,
    BulkParse,
    EarlyBuild,
)
from ansible_collections.mailops.submission.plugins.module_utils.database_connection import (
    ARGUMENT_SPEC as DATABASE_ARGUMENT_SPEC,
)
from ansible_collections.mailops.submission.plugins.module_utils.database_connection import (
    PSYCOPG_IMPORT_ERROR,
    DatabaseError,
    connect,
    psycopg,
    transaction,
)
from ansible_collections.mailops.submission.plugins.module_utils.sender_table import (
    Summary,
    TableError,
    apply_changes,
    count_pairs,
    normalize_entry,
    normalize_login_param,
)
from ansible_collections.mailops.submission.plugins.module_utils.store_senders import (
    StoreError,
    StoreRequest,
    keep_owner,
    open_store,
    plan_changes,
    read_rows,
    write_changes,
)
from ansible_collections.mailops.submission.plugins.module_utils.table_source import (
    find_line,
    header,
    input_digest,
    parse_table,
    parse_trusted_table,
    read_header,
    render_body,
)

MAP_SUFFIX = {"lmdb": ".lmdb", "hash": ".db", "cdb": ".cdb"}


@dataclasses.dataclass
class Plan:
    """What a run does to the table: its counts afterwards and, when it changes, how.

    changes is None when nothing is to be written; otherwise body is the new
    source body (bytes), desired the new table, and rebuild how the map follows.
    """

    keys: int
    pairs: int
    changes: Summary | None = None
    desired: dict | None = None
    body: bytes | None = None
    rebuild: str = "none"
    # An EarlyBuild whose map a full rebuild takes instead of running postmap.
    early: EarlyBuild | None = None

    def report(self, with_diff, path):
        """The module's return values for this plan."""
        report = {"keys": self.keys, "pairs": self.pairs, "rebuild": self.rebuild}
        if self.changes is None:
            return dict(report, changed=False, added=0, removed=0)
        report.update(changed=True, added=self.changes.added, removed=self.changes.removed)
        if with_diff:
            before, after = self.changes.diff()
            report["diff"] = {
                "before_header": f"{path} (pairs removed)",
                "after_header": f"{path} (pairs added)",
                "before": before,
                "after": after,
            }
        return report


class TableFiles:
    """The source file, the compiled map, and the postmap calls that make one from the other."""

    def __init__(self, module, path, map_type):
        self.module = module
        self.path = path
        self.type = map_type
        self.map = path + MAP_SUFFIX[map_type]
        self.directory = os.path.dirname(path) or "."
        self.postmap = [module.get_bin_path("postmap", required=True)]
        if module.params["postfix_config_dir"]:
            self.postmap += ["-c", module.params["postfix_config_dir"]]

    def read_source(self):
        try:
            with open(self.path, "rb") as handle:
                return handle.read()
        except FileNotFoundError:
            return None

    def header_fields(self):
        """The header fields, and whether the file is as this module wrote it.

        The module stamps the source with the mtime its header records; a file
        with that mtime and the recorded size has not been touched since, and
        is known without reading (or hashing) the rest of it.
        """
        try:
            with open(self.path, "rb") as handle:
                first = handle.readline(4096)
                stat = os.fstat(handle.fileno())
        except FileNotFoundError:
            return {}, False
        fields, offset = read_header(first)
        stamped = (
            offset > 0
            and fields.get("stamp") == str(stat.st_mtime_ns)
            and fields.get("bodysize") == str(stat.st_size - offset)
        )
        return fields, stamped

    def map_is_current(self):
        """The compiled map exists and is not older than its source."""
        try:
            return os.stat(self.map).st_mtime_ns >= os.stat(self.path).st_mtime_ns
        except FileNotFoundError:
            return False

    def early_build(self, text):
        return EarlyBuild(self.postmap, self.type, MAP_SUFFIX[self.type], self.path, text)

    def run_postmap(self, args, data=None):
        cmd = self.postmap + args
        rc, out, err = self.module.run_command(cmd, data=data, binary_data=data is not None)
        if rc != 0:
            raise OSError(f"{' '.join(cmd)} failed (rc={rc}): {err.strip() or out.strip()}")

    def replace(self, data, plan, stamp):
        """Put a new source and map in place by renaming complete files over the old ones.

        The source gets the mtime stamp, which its header (in data) records.
        """
        fd, tmp_source = tempfile.mkstemp(prefix=f".{os.path.basename(self.path)}.", dir=self.directory)
        tmp_map = tmp_source + MAP_SUFFIX[self.type]
        write_keys, delete_keys = plan.changes.keys_to_write, plan.changes.keys_to_delete
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            if plan.rebuild == "in-place":
                # One key: a single postmap update of the live map is one transaction
                # under Postfix's own exclusive lock, so readers see the old map or the
                # new one, and a failed update changes nothing.
                self.update_map(self.path, plan.desired, write_keys, delete_keys)
                try:
                    self.module.atomic_move(tmp_source, self.path)
                except BaseException:
                    # Mark the map older than its source: the next run rebuilds it.
                    os.utime(self.map, (0, 0))
                    raise
            else:
                if plan.rebuild == "incremental":
                    shutil.copyfile(self.map, tmp_map)
                    self.update_map(tmp_source, plan.desired, write_keys, delete_keys)
                elif plan.early is not None:
                    os.replace(plan.early.result(), tmp_map)
                else:
                    self.run_postmap([f"{self.type}:{tmp_source}"])
                # Source first: should the map's rename fail, the map is older than its
                # source, and the next run rebuilds it in full.
                self.module.atomic_move(tmp_source, self.path)
                self.module.atomic_move(tmp_map, self.map)
            os.utime(self.path, ns=(stamp, stamp))
            if os.stat(self.map).st_mtime_ns < stamp:
                os.utime(self.map, ns=(stamp, stamp))
        finally:
            for leftover in (tmp_source, tmp_map):
                if os.path.exists(leftover):
                    os.unlink(leftover)

    def update_map(self, base, table, write_keys, delete_keys):
        """Apply changed keys to the map of base with postmap -d and postmap -i."""
        if delete_keys:
            self.run_postmap(["-d", "-", f"{self.type}:{base}"], "".join(k + "\n" for k in delete_keys))
        if write_keys:
            lines = "".join(f"{k}\t{table[k]}\n" for k in write_keys)
            self.run_postmap(["-i", "-r", f"{self.type}:{base}"], lines)


def rebuild_mode(changes, map_current, map_type, limit):
    """How the compiled map follows a change: in-place, incremental or full."""
    write_keys, delete_keys = changes.keys_to_write, changes.keys_to_delete
    if not map_current or map_type == "cdb" or write_keys is None:
        return "full"
    count = len(write_keys) + len(delete_keys)
    if count > limit:
        return "full"
    return "in-place" if count == 1 else "incremental"


def plan_update(module, files, entries, digest, cleanup):
    """Read the table and compute what the run changes; writes nothing.

    Raises TableError for bad input or an unreadable table. An EarlyBuild it
    starts is registered with cleanup (an ExitStack), which removes its files.
    """
    params = module.params
    fields, stamped = files.header_fields()
    counted = fields.get("keys", "").isdigit() and fields.get("pairs", "").isdigit()
    map_current = files.map_is_current()
    raw = None
    if not (stamped and counted and map_current and fields.get("input") == digest):
        # Unless the file is as it was written (its stamp and size) and this is
        # the input that wrote it, the body is needed.
        raw = files.read_source()
    _, offset = read_header(raw or b"")
    body = memoryview(raw or b"")[offset:]
    # Source and map agree when the file is as written, or its digest still matches.
    trusted = (
        (stamped or (raw is not None and fields.get("body") == hashlib.sha256(body).hexdigest()))
        and counted
        and map_current
    )
    if trusted and fields.get("input") == digest:
        # The same input, applied to the table it produced last time: nothing to do.
        return Plan(int(fields["keys"]), int(fields["pairs"]))
    if trusted and not params["exclusive"] and not params["src"]:
        return plan_entries(files, params, entries, bytes(body), fields)
    try:
        text = str(body, "utf-8") if raw is not None else None
    except UnicodeDecodeError as exc:
        raise TableError(f"{files.path} is not UTF-8 text ({exc}); not touching it") from None
    if text is None:
        current = {}
    elif trusted:
        current = parse_trusted_table(text)
    else:
        current = parse_table(text, files.path)
    return plan_table(module, files, entries, current, cleanup)


def plan_entries(files, params, entries, body, fields):
    """Change only the keys the entries name, in a table whose source and map agree."""
    keys, pairs = int(fields["keys"]), int(fields["pairs"])
    touched = sorted({sender for sender, _, _ in entries})
    places = {key: find_line(body, key.encode()) for key in touched}
    current = {}
    for key, (start, end, exists) in places.items():
        if exists:
            current[key] = body[start + len(key) + 1 : end].decode().strip()
    desired = apply_changes(current, entries, {}, exclusive=False)
    changes = Summary(current, desired, key_limit=len(desired) + 1)
    if not changes.added and not changes.removed:
        return Plan(keys, pairs)
    parts, pos = [], 0
    for key in touched:  # sorted, so the edits come in file order
        start, end, _ = places[key]
        parts.append(body[pos:start])
        if key in desired:
            parts.append(f"{key}\t{desired[key]}\n".encode())
        pos = end
    parts.append(body[pos:])
    keys += len(desired) - len(current)
    pairs += changes.added - changes.removed
    rebuild = rebuild_mode(changes, True, files.type, params["incremental_limit"])
    return Plan(keys, pairs, changes, desired, b"".join(parts), rebuild)


def plan_table(module, files, entries, current, cleanup):
    """The whole new table, from the current one, the entries and the bulk file."""
    params = module.params
    exclusive = params["exclusive"]
    bulk = early = None
    if params["src"]:
        try:
            with open(params["src"], encoding="utf-8", errors="strict") as handle:
                bulk = BulkParse(handle.read(), f"src {params['src']}")
        except UnicodeDecodeError as exc:
            raise TableError(f"src {params['src']} is not UTF-8 text ({exc})") from None
        text = bulk.postmap_text
        if exclusive and not entries and not module.check_mode and text and len(text) >= PARALLEL_MIN_BYTES:
            early = files.early_build(text)
            cleanup.callback(early.cancel)
    # While the bulk file's check runs, plan with its provisional table (the
    # rendering uses the other core); nothing is written before the check confirms it.
    provisional = {} if bulk is None else bulk.table
    plan = None
    if provisional is not None:
        plan = plan_from(files, params, current, apply_changes(current, entries, provisional, exclusive), early)
    if bulk is not None and not bulk.confirmed():
        if early is not None:
            early.cancel()
        desired = apply_changes(current, entries, bulk.parse_slowly(), exclusive)
        plan = plan_from(files, params, current, desired, None)
    return plan


def plan_from(files, params, current, desired, early):
    """The plan that turns the current table into desired."""
    map_current = files.map_is_current()
    limit = params["incremental_limit"] if map_current else -1
    changes = Summary(current, desired, key_limit=limit)
    keys, pairs = len(desired), count_pairs(desired)
    if not changes.added and not changes.removed and map_current:
        return Plan(keys, pairs)
    rebuild = rebuild_mode(changes, map_current, files.type, params["incremental_limit"])
    return Plan(keys, pairs, changes, desired, render_body(desired).encode(), rebuild, early)


@contextlib.contextmanager
def directory_lock(directory):
    """One run at a time per directory: read, compute and replace as one step."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def check_params(params):
    """Everything about the input that can be checked before the table is read."""
    path = params["path"]
    if not os.path.isabs(path) or os.path.isdir(path):
        raise TableError(f"path {path!r} must be an absolute file path")
    if not os.path.isdir(os.path.dirname(path)):
        raise TableError(f"directory {os.path.dirname(path)!r} of path does not exist")
    entries = [normalize_entry(i, e) for i, e in enumerate(params["entries"])]
    src_digest = None
    if params["src"]:
        if not os.path.isfile(params["src"]):
            raise TableError(f"src {params['src']!r} does not exist or is not a file")
        # The src file's identity, as make and git tell a file unchanged: inode,
        # size, mtime and ctime (which no tool can set back).
        st = os.stat(params["src"])
        src_digest = f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"
    return entries, input_digest(entries, src_digest, params["exclusive"], params["type"])


def store_src_pairs(params):
    """The pairs of src for the store (addresses only), or an empty set."""
    if not params["src"]:
        return set()
    try:
        with open(params["src"], encoding="utf-8") as handle:
            bulk = parse_table(handle.read(), f"src {params['src']}")
    except (OSError, UnicodeDecodeError) as exc:
        raise TableError(f"src {params['src']!r} cannot be read: {exc}") from None
    pairs = {(sender, login) for sender, logins in bulk.items() for login in logins.split(",")}
    domain_keys = sorted(sender for sender, _ in pairs if sender.startswith("@"))
    if domain_keys:
        raise TableError(f"src {params['src']}: the store holds addresses, not @domain keys ({domain_keys[0]})")
    return pairs


def store_logins(params, entries, bulk_pairs):
    """The logins option, normalised (None when unset); a pair to add for another login is an error."""
    if params["logins"] is None:
        return None
    logins = {normalize_login_param(index, login) for index, login in enumerate(params["logins"])}
    for index, (sender, login, state) in enumerate(entries):
        if state == "present" and login not in logins:
            raise TableError(f"entries[{index}] (sender {sender!r}): login {login!r} is not among logins")
    for sender, login in sorted(bulk_pairs):
        if login not in logins:
            raise TableError(f"src {params['src']}: {sender} {login}: login {login!r} is not among logins")
    return logins


def store_request(params, entries):
    """The StoreRequest of a run on the SQLite store or the fleet database; TableError for bad input."""
    for index, (sender, _login, _state) in enumerate(entries):
        if sender.startswith("@"):
            raise TableError(f"entries[{index}] (sender {sender!r}): the store holds addresses, not @domain keys")
    bulk_pairs = store_src_pairs(params)
    return StoreRequest(entries, bulk_pairs, params["exclusive"], store_logins(params, entries, bulk_pairs))


def store_result(module, target, changes):
    """The module's results for a store plan (either backend)."""
    result = {
        "changed": bool(changes.insert or changes.delete),
        "added": len(changes.insert),
        "removed": len(changes.delete),
        "pairs": changes.pairs,
        "keys": changes.keys,
    }
    if module._diff:
        result["diff"] = {
            "before_header": f"{target} (pairs removed)",
            "after_header": f"{target} (pairs added)",
            "before": "".join(f"{s} {lg}\n" for s, lg in sorted(changes.delete)[:1000]),
            "after": "".join(f"{s} {lg}\n" for s, lg in sorted(changes.insert)[:1000]),
        }
    return result


def update_store(module, entries):
    """The store's changes, made in one transaction (rolled back in check mode); the module's results."""
    params = module.params
    request = store_request(params, entries)
    try:
        db = open_store(params["store"])
    except StoreError as exc:
        raise TableError(str(exc)) from None
    try:
        db.execute("BEGIN IMMEDIATE")
        inventory, user = read_rows(db)
        changes = plan_changes(inventory, user, request)
        result = store_result(module, params["store"], changes)
        if result["changed"] and not module.check_mode:
            write_changes(db, changes, int(time.time()))
            db.execute("COMMIT")
        else:
            db.execute("ROLLBACK")
        keep_owner(params["store"])
    except sqlite3.Error as exc:
        raise TableError(f"store {params['store']} left unchanged: {exc}") from None
    finally:
        db.close()
    return result


def update_database(module, entries):
    """The fleet database's changes, in one transaction (rolled back in check mode); the module's results."""
    params = module.params
    if psycopg is None:
        module.fail_json(msg=missing_required_lib("psycopg (python3-psycopg)"), exception=PSYCOPG_IMPORT_ERROR)
    request = store_request(params, entries)
    target = f"database {params['database']}"
    try:
        with transaction(connect(params), target) as (cursor, outcome):
            # Entries alone (no src, exclusive or logins): only their senders' rows matter.
            partial = not (request.exclusive or request.bulk_pairs or request.logins is not None)
            senders = {sender for sender, _, _ in request.entries} if partial else None
            inventory, user = database_senders.read_rows(cursor, senders)
            changes = plan_changes(inventory, user, request)
            if partial:
                database_senders.count_after(cursor, inventory, user, changes)
            result = store_result(module, target, changes)
            if result["changed"] and not module.check_mode:
                database_senders.write_changes(cursor, changes, int(time.time()))
                outcome.commit = True
    except DatabaseError as exc:
        raise TableError(str(exc)) from None
    return result


def update_table(module, result):
    """The table file's and map's changes, made unless in check mode, into result."""
    path = module.params["path"]
    entries, digest = check_params(module.params)
    files = TableFiles(module, path, module.params["type"])
    result["map"] = files.map
    with contextlib.ExitStack() as cleanup:
        cleanup.enter_context(directory_lock(files.directory))
        plan = plan_update(module, files, entries, digest, cleanup)
        result.update(plan.report(module._diff, path))
        if plan.changes is not None and not module.check_mode:
            stamp = time.time_ns()
            data = header(digest, plan.body, plan.keys, plan.pairs, stamp) + plan.body
            try:
                files.replace(data, plan, stamp)
            except OSError as exc:
                raise TableError(f"{path} left unchanged: {exc}") from None
    result["changed"] = set_attributes(module, files, result["changed"])


def set_attributes(module, files, changed):
    """Owner, group, mode and the like, on the source and the map; whether anything changed."""
    for target in (files.path, files.map):
        if os.path.exists(target) or not module.check_mode:
            file_args = module.load_file_common_arguments(module.params, path=target)
            changed = module.set_fs_attributes_if_different(file_args, changed)
    return changed


def main():
    # A short-lived process that builds millions of objects and frees them at exit:
    # the cyclic garbage collector would only scan them over and over.
    gc.disable()
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path"},
            "store": {"type": "path"},
            "database": {"type": "str"},
            "login_user": DATABASE_ARGUMENT_SPEC["login_user"],
            "login_unix_socket": DATABASE_ARGUMENT_SPEC["login_unix_socket"],
            "port": DATABASE_ARGUMENT_SPEC["port"],
            "session_role": DATABASE_ARGUMENT_SPEC["session_role"],
            "entries": {
                "type": "list",
                "elements": "dict",
                "default": [],
                "options": {
                    "sender": {"type": "str", "required": True},
                    "login": {"type": "str"},
                    "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
                },
                "required_if": [("state", "present", ["login"])],
            },
            "src": {"type": "path"},
            "exclusive": {"type": "bool", "default": False},
            "logins": {"type": "list", "elements": "str"},
            "type": {"type": "str", "choices": list(MAP_SUFFIX), "default": "lmdb"},
            "postfix_config_dir": {"type": "path"},
            "incremental_limit": {"type": "int", "default": 10000},
        },
        add_file_common_args=True,
        supports_check_mode=True,
        required_one_of=[("path", "store", "database")],
        mutually_exclusive=[("path", "store", "database")],
    )
    # required_one_of counts an empty value as given: the one given is selected, then checked.
    kind = next(key for key in ("store", "database", "path") if module.params[key] is not None)
    target = {kind: module.params[kind]}
    result = dict(target, changed=False, added=0, removed=0, rebuild="none")
    error = None
    try:
        if not module.params[kind]:
            raise TableError(f"{kind} is empty: name the {'database' if kind == 'database' else 'file'} to manage")
        if kind in ("store", "database"):
            entries = [normalize_entry(i, e) for i, e in enumerate(module.params["entries"])]
            result.update((update_store if kind == "store" else update_database)(module, entries))
        else:
            update_table(module, result)
    except TableError as exc:
        error = str(exc)
    if error is not None:
        module.fail_json(msg=error, **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
