"""The sender_allowlist module run as Ansible runs it: its own Python process,
its arguments in a JSON file, its result as JSON on stdout.

Shared by the unit tests (conftest.py) and benchmarks/sender_allowlist.py.
"""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import time

MODULE = pathlib.Path(__file__).parents[4] / "plugins/modules/sender_allowlist.py"
COLLECTIONS = pathlib.Path(__file__).parents[7]
POSTMAP = shutil.which("postmap") or shutil.which("postmap", path="/usr/sbin:/sbin")


def module_command(params, args_dir, check=False, diff=False):
    """The command line and environment that run the module with params."""
    if POSTMAP is None:
        raise RuntimeError("Postfix's postmap is not installed (apt-get install postfix postfix-lmdb postfix-cdb)")
    args = {"ANSIBLE_MODULE_ARGS": dict(params, _ansible_check_mode=check, _ansible_diff=diff)}
    args_file = pathlib.Path(args_dir) / f"args-{os.urandom(4).hex()}.json"
    args_file.write_text(json.dumps(args))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(COLLECTIONS), *sys.path]))
    env["PATH"] = env.get("PATH", "") + ":" + os.path.dirname(POSTMAP)
    return [sys.executable, str(MODULE), str(args_file)], env


def empty_postfix_config(directory):
    """An empty main.cf in directory, for postmap -c, dated an hour back.

    Postfix programs wait while main.cf looks freshly written (up to 1.5 s a
    call, measured: postmap took 1.52 s with a new main.cf, 0.01 s with an old one).
    """
    main_cf = pathlib.Path(directory) / "main.cf"
    main_cf.write_text("")
    an_hour_ago = time.time() - 3600
    os.utime(main_cf, (an_hour_ago, an_hour_ago))


def module_result(out, err=b""):
    """The module's JSON result; fails naming what it printed instead."""
    try:
        return json.loads(out)
    except json.JSONDecodeError:
        raise AssertionError(f"module printed no JSON: {out!r} {err!r}") from None


class Table:
    """A table in a work directory, Postfix's postmap to read it, and the module run against it."""

    def __init__(self, work):
        self.dir = work / "tables"
        self.dir.mkdir()
        self.config = work / "postfix"
        self.config.mkdir()
        empty_postfix_config(self.config)
        self.path = self.dir / "senders"

    def start(self, check=False, diff=False, **params):
        params.setdefault("path", str(self.path))
        params.setdefault("postfix_config_dir", str(self.config))
        cmd, env = module_command(params, self.dir.parent, check, diff)
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)

    def run(self, check=False, diff=False, **params):
        out, err = self.start(check=check, diff=diff, **params).communicate(timeout=120)
        return module_result(out, err)

    def query(self, *keys, map_type="lmdb", path=None):
        """What Postfix's own lookup code returns for each key (None: not found)."""
        proc = subprocess.run(
            [POSTMAP, "-c", str(self.config), "-q", "-", f"{map_type}:{path or self.path}"],
            input="".join(k + "\n" for k in keys),
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.returncode in (0, 1), proc.stderr
        found = dict(line.split("\t", 1) for line in proc.stdout.splitlines())
        return {k: found.get(k) for k in keys}

    def files(self):
        return sorted(p.name for p in self.dir.iterdir())
