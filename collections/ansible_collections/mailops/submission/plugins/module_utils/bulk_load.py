# Copyright: smtp-submission developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bulk loads: a file of ``sender login`` lines, parsed into a table.

A file whose every line is already canonical ASCII (the usual machine-written
export) is checked by one regex pass (``sender_address.is_canonical_bulk_file``)
and split at C speed; any other file is parsed line by line, which normalises
IDN domains and names the first bad line. On a large file (``PARALLEL_MIN_BYTES``)
two things run on the second core while this process goes on: the regex check,
in a forked child, and ``EarlyBuild``, postmap compiling the file's text for an
exclusive load, started before the file is split. Neither result is used before
the check has passed.

Pure Python, no Ansible import.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
import tempfile

from ansible_collections.mailops.submission.plugins.module_utils.sender_address import (
    AddressError,
    is_canonical_bulk_file,
    normalize_login,
    normalize_sender,
)
from ansible_collections.mailops.submission.plugins.module_utils.sender_table import (
    TableError,
    pairs_to_table,
    table_lines,
)
from ansible_collections.mailops.submission.plugins.module_utils.table_source import sort_pair_lines

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

    Made in steps, so that postmap can start on the file before it is split: the
    constructor lower-cases the file and, on a large one, starts the regex check
    (``postmap_text`` is known then); the file is split into words when a result
    is first asked for, and into the table only if ``table`` is. Results are
    provisional when the file is large: the caller may compute with them, but not
    write them, until ``confirmed()`` says the check passed. When the check fails
    (or the file is not ASCII), ``parse_slowly()`` gives the table or the error
    that names the first bad line.
    """

    def __init__(self, text, origin):
        if not text.endswith("\n"):
            text += "\n"
        self.text, self.origin = text, origin
        folded = text.lower()
        self._folded = self._check = None
        # The lower-cased file itself, when postmap may read it as this table: no
        # line starts with whitespace (a continuation line to postmap). It is the
        # table once confirmed, unless a key repeats (``repeats_keys``: postmap
        # keeps the first).
        self.postmap_text = None
        if folded.isascii():
            self._check = _start_check(folded)
            self._folded = folded
            if not folded.startswith((" ", "\t")) and "\n " not in folded and "\n\t" not in folded:
                self.postmap_text = folded

    @functools.cached_property
    def _words(self):
        """(the file without blank and comment lines, its words: sender, login, sender...),
        or None when the file is not ASCII or its words do not pair up."""
        return None if self._folded is None else _split_words(self._folded)

    @functools.cached_property
    def table(self):
        """The provisional table; None when the file is not ASCII or its words do not pair up."""
        if self._words is None:
            return None
        words = self._words[1]
        senders, logins = words[0::2], words[1::2]
        table = dict(zip(senders, logins, strict=True))
        if len(table) != len(senders):
            return pairs_to_table(zip(senders, logins, strict=True))
        return table

    @functools.cached_property
    def repeats_keys(self):
        """True when a key has more than one line (their logins are merged)."""
        if self._words is None:
            return False
        senders = self._words[1][0::2]
        return len(set(senders)) != len(senders)

    @functools.cached_property
    def sorted_lines(self):
        """The file's lines sorted as the source's (table_source.sort_pair_lines), when
        each holds one pair with one space or tab between, and no key repeats; else None.

        This is the table without building it: the lines of a table with one login a key.
        """
        if self._words is None or self.repeats_keys:
            return None
        text, words = self._words
        # As many spaces and tabs as pairs: one a line in a file the check passes.
        # Before the check, a line may still hold other than one pair: whoever
        # splits these lines into pairs fails on it (ValueError) rather than trusts them.
        if text.count(" ") + text.count("\t") != len(words) // 2:
            return None
        return sort_pair_lines(text)

    def confirmed(self):
        """True when the provisional results are the file's; waits for the check."""
        if self._words is None:
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
        os._exit(0 if is_canonical_bulk_file(folded) else 1)
    return pid


def _check_passed(pid, folded):
    if pid is None:
        return is_canonical_bulk_file(folded)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


def _split_words(folded):
    # Substring tests run at memchr speed; the regex only runs when a line may need skipping.
    if "#" in folded or "\n\n" in folded or folded.startswith(("\n", " ", "\t")) or "\n " in folded or "\n\t" in folded:
        folded = _SKIPPED_LINE.sub("", folded)
    words = folded.split()
    return None if len(words) % 2 else (folded, words)


class EarlyBuild:
    """postmap compiling a bulk file's text while the caller renders the source file.

    For an exclusive load of a bulk file alone, the map's content is the file's
    content (``BulkParse.postmap_text``), so postmap can start on it before the
    file is split and the sorted source rendered: the two use both cores. Its map
    may be used only once the file's check has passed, and no key repeats.
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
        # A cdb map is written to MAP.tmp and renamed once complete.
        for leftover in (self.source, self.map, self.map + ".tmp"):
            if os.path.exists(leftover):
                os.unlink(leftover)
