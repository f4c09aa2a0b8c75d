# Copyright: smtp-submission developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The table-file backend of sender_allowlist (option ``path``): a Postfix
table's source file and its compiled map, replaced whole or updated with
``postmap -i``/``-d``, under a lock on their directory.

The source starts with a header (table_source.header) recording digests of the
input and of the body, so that a repeated run recognises an unchanged table
without parsing it; small changes touch only the lines and keys they name.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import os
import shutil
import tempfile
import time

from ansible_collections.mailops.submission.plugins.module_utils.allowlist_backends.common import (
    AllowlistBackend,
)
from ansible_collections.mailops.submission.plugins.module_utils.bulk_load import (
    PARALLEL_MIN_BYTES,
    BulkParse,
    EarlyBuild,
)
from ansible_collections.mailops.submission.plugins.module_utils.sender_table import (
    Summary,
    TableError,
    apply_changes,
    count_pairs,
)
from ansible_collections.mailops.submission.plugins.module_utils.table_source import (
    MAP_SUFFIX,
    find_line,
    header,
    input_digest,
    parse_table,
    parse_trusted_table,
    read_header,
    render_body,
    render_pair_lines,
)


@dataclasses.dataclass
class Plan:
    """What a run does to the table: its counts afterwards and, when it changes, how.

    changes is None when nothing is to be written; otherwise body is the new
    source body (bytes), desired the new table (None when a load was planned
    without it: a full rebuild), and rebuild how the map follows.
    """

    keys: int
    pairs: int
    changes: Summary | None = None
    desired: dict | None = None
    body: bytes | None = None
    rebuild: str = "none"
    # An EarlyBuild whose map a full rebuild takes instead of running postmap.
    early: EarlyBuild | None = None

    def report(self, outcome, with_diff, path):
        """Set the outcome (the module's return values) for this plan."""
        outcome.keys, outcome.pairs, outcome.rebuild = self.keys, self.pairs, self.rebuild
        if self.changes is None:
            outcome.changed, outcome.added, outcome.removed = False, 0, 0
            return
        outcome.changed, outcome.added, outcome.removed = True, self.changes.added, self.changes.removed
        if with_diff:
            outcome.set_diff(path, *self.changes.diff())


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

    def replace(self, head, plan, stamp):
        """Put a new source and map in place by renaming complete files over the old ones.

        The source is head (its header line, bytes) and plan.body; it gets the mtime
        stamp, which its header records.
        """
        fd, tmp_source = tempfile.mkstemp(prefix=f".{os.path.basename(self.path)}.", dir=self.directory)
        tmp_map = tmp_source + MAP_SUFFIX[self.type]
        write_keys, delete_keys = plan.changes.keys_to_write, plan.changes.keys_to_delete
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(head)
                handle.write(plan.body)
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
    # An exclusive load of a bulk file alone: the new table is the file's.
    file_only = exclusive and not entries
    bulk = early = None
    if params["src"]:
        try:
            with open(params["src"], encoding="utf-8", errors="strict") as handle:
                bulk = BulkParse(handle.read(), f"src {params['src']}")
        except UnicodeDecodeError as exc:
            raise TableError(f"src {params['src']} is not UTF-8 text ({exc})") from None
        text = bulk.postmap_text
        if file_only and not module.check_mode and text and len(text) >= PARALLEL_MIN_BYTES:
            early = files.early_build(text)
            cleanup.callback(early.cancel)
            # The file is split while postmap compiles it.
            if bulk.repeats_keys:
                early.cancel()
                early = None
    # While the bulk file's check runs, plan with its provisional results (the
    # rendering uses the other core); nothing is written before the check confirms them.
    plan = None
    lines = bulk.sorted_lines if file_only and bulk is not None else None
    if lines is not None and not current:
        try:
            plan = plan_load(files, params, lines)
        except ValueError:
            # A line that is not one pair (a file the check will refuse, or lines
            # split at a vertical tab or form feed): planned from the table instead.
            lines = None
    if plan is None and (bulk is None or bulk.table is not None):
        desired = apply_changes(current, entries, {} if bulk is None else bulk.table, exclusive)
        plan = plan_from(files, params, current, desired, lines)
    if plan is not None:
        plan.early = early  # a full rebuild takes its map
    if bulk is not None and not bulk.confirmed():
        if early is not None:
            early.cancel()
        desired = apply_changes(current, entries, bulk.parse_slowly(), exclusive)
        plan = plan_from(files, params, current, desired)
    return plan


def plan_load(files, params, lines):
    """The plan that fills an empty table from a bulk file's sorted lines (BulkParse.sorted_lines),
    without building the table.

    Only for a load that rebuilds the whole map, as plan_from would (no current map,
    or more keys than an incremental update takes); otherwise, or without lines, None.
    """
    if lines is None or (files.map_is_current() and len(lines) <= max(params["incremental_limit"], 0)):
        return None
    changes = Summary.of_load(map(str.split, lines), len(lines))
    return Plan(len(lines), len(lines), changes, None, render_pair_lines(lines).encode(), "full")


def plan_from(files, params, current, desired, lines=None):
    """The plan that turns the current table into desired.

    lines, when desired is a bulk file's table alone, are its sorted lines
    (BulkParse.sorted_lines), from which the source is rendered.
    """
    map_current = files.map_is_current()
    limit = params["incremental_limit"] if map_current else -1
    changes = Summary(current, desired, key_limit=limit)
    # From an empty table every pair is added: Summary has counted them already.
    keys, pairs = len(desired), changes.added if not current else count_pairs(desired)
    if not changes.added and not changes.removed and map_current:
        return Plan(keys, pairs)
    rebuild = rebuild_mode(changes, map_current, files.type, params["incremental_limit"])
    body = render_body(desired) if lines is None else render_pair_lines(lines)
    return Plan(keys, pairs, changes, desired, body.encode(), rebuild)


@contextlib.contextmanager
def directory_lock(directory):
    """One run at a time per directory: read, compute and replace as one step."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def check_params(request):
    """Everything about the input that can be checked before the table is read."""
    params = request.params
    path = params["path"]
    if not os.path.isabs(path) or os.path.isdir(path):
        raise TableError(f"path {path!r} must be an absolute file path")
    if not os.path.isdir(os.path.dirname(path)):
        raise TableError(f"directory {os.path.dirname(path)!r} of path does not exist")
    entries = request.entries()
    src_digest = None
    if params["src"]:
        if not os.path.isfile(params["src"]):
            raise TableError(f"src {params['src']!r} does not exist or is not a file")
        # The src file's identity, as make and git tell a file unchanged: inode,
        # size, mtime and ctime (which no tool can set back).
        st = os.stat(params["src"])
        src_digest = f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"
    return entries, input_digest(entries, src_digest, params["exclusive"], params["type"])


def set_attributes(module, files, changed):
    """Owner, group, mode and the like, on the source and the map; whether anything changed."""
    for target in (files.path, files.map):
        if os.path.exists(target) or not module.check_mode:
            file_args = module.load_file_common_arguments(module.params, path=target)
            changed = module.set_fs_attributes_if_different(file_args, changed)
    return changed


class TableFileBackend(AllowlistBackend):
    """A table file and its compiled map (option path)."""

    def __init__(self, module, request):
        super().__init__(module, request)
        self.files = self.planned = self.cleanup = None

    @contextlib.contextmanager
    def session(self):
        self.entries, self.digest = check_params(self.request)
        self.files = TableFiles(self.module, self.params["path"], self.params["type"])
        self.outcome.map = self.files.map
        with contextlib.ExitStack() as cleanup:
            cleanup.enter_context(directory_lock(self.files.directory))
            self.cleanup = cleanup
            yield
        self.outcome.changed = set_attributes(self.module, self.files, self.outcome.changed)

    def plan(self):
        self.planned = plan_update(self.module, self.files, self.entries, self.digest, self.cleanup)
        self.planned.report(self.outcome, self.request.diff, self.files.path)

    def apply(self):
        plan = self.planned
        if plan.changes is None:
            return
        stamp = time.time_ns()
        head = header(self.digest, plan.body, plan.keys, plan.pairs, stamp)
        try:
            self.files.replace(head, plan, stamp)
        except OSError as exc:
            raise TableError(f"{self.files.path} left unchanged: {exc}") from None
