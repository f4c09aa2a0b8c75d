"""``listen_fds`` as python3-systemd's, after sd_listen_fds(3)."""

import os

LISTEN_FDS_START = 3


def listen_fds(unset_environment=True):
    """The descriptors systemd passed to this process: none unless LISTEN_PID is its pid."""
    count = int(os.environ.get("LISTEN_FDS", "0")) if os.environ.get("LISTEN_PID") == str(os.getpid()) else 0
    if unset_environment:
        os.environ.pop("LISTEN_PID", None)
        os.environ.pop("LISTEN_FDS", None)
    return list(range(LISTEN_FDS_START, LISTEN_FDS_START + count))
