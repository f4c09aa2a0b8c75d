"""A count of the changes in the store's directory, as the kernel reports them (inotify).

The map keeps its answers until anything changes in that directory: a commit,
a checkpoint, a chmod, a move or a restore over the file. The kernel queues
that report inside the writer's own write(), rename() or chmod(), before they
return, and each lookup reads the queue before it trusts a kept answer, so a
confirmation or a removal still counts at the very next lookup. A kept answer
costs one read() that finds nothing.

inotify(7) through ctypes: the standard library has no binding, and Debian's
python3-pyinotify would add a package for two calls.
"""

from __future__ import annotations

import ctypes
import os
import struct
import sys
import threading

# inotify(7): what in the store's directory makes a kept answer stale.
IN_MODIFY, IN_ATTRIB, IN_MOVED_FROM, IN_MOVED_TO = 0x2, 0x4, 0x40, 0x80
IN_CREATE, IN_DELETE, IN_DELETE_SELF, IN_MOVE_SELF = 0x100, 0x200, 0x400, 0x800
IN_Q_OVERFLOW, IN_IGNORED = 0x4000, 0x8000
WATCHED = IN_MODIFY | IN_ATTRIB | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF
# The directory itself gone or moved: the watch no longer covers the path.
WATCH_LOST = IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF
EVENT_HEADER = struct.Struct("iIII")


class StoreWatch:
    """A count of the changes in a directory, read without waiting.

    ``generation()`` drains the kernel's queue of inotify events and returns a
    number that differs from any earlier one if an event came in between.
    None means that nothing can be kept: inotify was not available, or the
    directory was deleted or moved away.
    """

    def __init__(self, directory):
        self.lock = threading.Lock()
        self.count = 0
        self.fd = None
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
            if fd < 0:
                raise OSError(ctypes.get_errno(), "inotify_init1")
            if libc.inotify_add_watch(fd, os.fsencode(directory), WATCHED) < 0:
                error = ctypes.get_errno()
                os.close(fd)
                raise OSError(error, f"inotify_add_watch {directory}")
        except (OSError, AttributeError) as exc:
            print(f"sender-map: answers are not kept, each lookup reads the store: {exc}", file=sys.stderr)
            return
        self.fd = fd

    def generation(self):
        with self.lock:
            while self.fd is not None:
                try:
                    events = os.read(self.fd, 65536)
                except BlockingIOError:
                    break
                self.count += 1
                offset = 0
                while offset < len(events):
                    _, mask, _, length = EVENT_HEADER.unpack_from(events, offset)
                    offset += EVENT_HEADER.size + length
                    if mask & WATCH_LOST and not mask & IN_Q_OVERFLOW:
                        print("sender-map: the store's directory is gone; answers are no longer kept", file=sys.stderr)
                        os.close(self.fd)
                        self.fd = None
                        break
            return self.count if self.fd is not None else None
