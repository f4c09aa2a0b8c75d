# Copyright: smtp-submission developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bulk loads: a file of ``sender login`` lines, parsed into a table.

A file whose every line is already canonical ASCII (the usual machine-written
export) is checked by one regex pass (``BULK_FILE_RE``) and split at C speed;
any other file is parsed line by line, which normalises IDN domains and names
the first bad line. On a large file (``PARALLEL_MIN_BYTES``) two things run on
the second core while this process goes on: the regex check, in a forked child,
and ``EarlyBuild``, postmap compiling the file's text for an exclusive load.
Neither result is used before the check has passed.

Pure Python, no Ansible import.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile

from ansible_collections.mailops.submission.plugins.module_utils.sender_address import (
    BULK_FILE_RE,
    AddressError,
    normalize_login,
    normalize_sender,
)
from ansible_collections.mailops.submission.plugins.module_utils.sender_table import (
    TableError,
    pairs_to_table,
    table_lines,
)

# Below this, a file is checked and compiled faster than a second process starts.
PARALLEL_MIN_BYTES = 1 << 20
_SKIPPED_LINE = re.compile(r"(?m)^[ \t]*(?:#[^\n]*)?\n")


def parse_pairs(text, origin):
    """Parse ``sender login`` lines (a bulk-load file) into a list of canonical pairs.

    Blank lines and lines starting with '#' are skipped. Raises TableError naming
    the file, the line number and the line at the first bad line.
    """
    pairs = []
    append = pairs.append
    for number, (sender, login) in table_lines(text, origin, "sender login"):
        try:
            append((normalize_sender(sender), normalize_login(login)))
        except AddressError as exc:
            raise TableError(f"{origin} line {number}: {exc}") from None
    return pairs


class BulkParse:
    """The table of a bulk-load file.

    ``table`` is provisional when the file is large: the caller may compute with
    it, but not write it, until ``confirmed()`` says the regex check passed. When
    the check fails (or the file is not ASCII), ``parse_slowly()`` gives the
    table or the error that names the first bad line.
    """

    def __init__(self, text, origin):
        if not text.endswith("\n"):
            text += "\n"
        self.text, self.origin = text, origin
        folded = text.lower()
        self.table = None
        self._check = None
        # The lower-cased file itself, when postmap would read it as this table:
        # no key twice (postmap keeps the first) and no line that starts with
        # whitespace (a continuation line to postmap). Valid once confirmed.
        self.postmap_text = None
        if folded.isascii():
            self._check = _start_check(folded)
            self._folded = folded
            self.table, unique = _split_table(folded)
            indented = folded.startswith((" ", "\t")) or "\n " in folded or "\n\t" in folded
            if unique and not indented:
                self.postmap_text = folded

    def confirmed(self):
        """True when the provisional table is the file's table; waits for the check."""
        if self.table is None:
            return False
        ok = _check_passed(self._check, self._folded)
        self._folded = None
        return ok

    def parse_slowly(self):
        """The table, by the line-by-line parser; raises TableError naming the first bad line."""
        return pairs_to_table(parse_pairs(self.text, self.origin))


def _start_check(folded):
    if len(folded) < PARALLEL_MIN_BYTES:
        return None
    try:
        pid = os.fork()
    except OSError:
        return None
    if pid == 0:  # pragma: no cover - the child only reports by its exit status
        os._exit(0 if BULK_FILE_RE.fullmatch(folded) else 1)
    return pid


def _check_passed(pid, folded):
    if pid is None:
        return BULK_FILE_RE.fullmatch(folded) is not None
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


def _split_table(folded):
    # Substring tests run at memchr speed; the regex only runs when a line may need skipping.
    if "#" in folded or "\n\n" in folded or folded.startswith(("\n", " ", "\t")) or "\n " in folded or "\n\t" in folded:
        folded = _SKIPPED_LINE.sub("", folded)
    tokens = folded.split()
    senders, logins = tokens[0::2], tokens[1::2]
    if len(senders) != len(logins):
        return None, False
    table = dict(zip(senders, logins, strict=True))
    if len(table) == len(senders):
        return table, True
    return pairs_to_table(zip(senders, logins, strict=True)), False


class EarlyBuild:
    """postmap compiling a bulk file's text while the caller renders the source file.

    For an exclusive load of a bulk file alone, the map's content is the file's
    content (``BulkParse.postmap_text``), so postmap can start on it before the
    sorted source is rendered: the two use both cores. Its map may be used only
    once the file's check has passed.
    """

    def __init__(self, postmap, map_type, suffix, path, text):
        """Start postmap (argv postmap) on text, beside the table at path."""
        self.map_type = map_type
        directory, name = os.path.split(path)
        fd, self.source = tempfile.mkstemp(prefix=f".{name}.bulk.", dir=directory or ".")
        self.map = self.source + suffix
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(text)
        self.proc = subprocess.Popen(
            [*postmap, f"{map_type}:{self.source}"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def result(self):
        """The path of the built map; raises OSError if postmap failed."""
        _, err = self.proc.communicate()
        os.unlink(self.source)
        if self.proc.returncode != 0:
            self.cancel()
            raise OSError(f"postmap {self.map_type}:{self.source} failed: {err.decode(errors='replace').strip()}")
        return self.map

    def cancel(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for leftover in (self.source, self.map):
            if os.path.exists(leftover):
                os.unlink(leftover)
