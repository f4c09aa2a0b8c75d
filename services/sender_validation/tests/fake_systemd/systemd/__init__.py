"""A stand-in for Debian's python3-systemd, for the tests of socket activation.

The unit tests' virtualenv has no systemd module (PyPI's systemd-python builds
against libsystemd-dev); the daemon imports only ``systemd.daemon.listen_fds``.
The molecule scenarios run the real one.
"""
