import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

MODULE = pathlib.Path(__file__).parents[4] / "plugins/modules/sender_allowlist.py"
COLLECTIONS = pathlib.Path(__file__).parents[7]

POSTMAP = shutil.which("postmap") or shutil.which("postmap", path="/usr/sbin:/sbin")
needs_postmap = pytest.mark.skipif(
    POSTMAP is None, reason="Postfix's postmap is not installed (apt-get install postfix)"
)


class Table:
    """A table in a temporary directory, and the module run against it as Ansible would run it."""

    def __init__(self, tmp_path):
        self.dir = tmp_path / "tables"
        self.dir.mkdir()
        self.config = tmp_path / "postfix"
        self.config.mkdir()
        (self.config / "main.cf").write_text("")
        self.path = self.dir / "senders"

    def start(self, check=False, diff=False, **params):
        params.setdefault("path", str(self.path))
        params.setdefault("postfix_config_dir", str(self.config))
        args = {"ANSIBLE_MODULE_ARGS": dict(params, _ansible_check_mode=check, _ansible_diff=diff)}
        args_file = self.dir.parent / f"args-{os.urandom(4).hex()}.json"
        args_file.write_text(json.dumps(args))
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(COLLECTIONS), *sys.path]))
        env["PATH"] = env.get("PATH", "") + ":/usr/sbin:/sbin"
        return subprocess.Popen(
            [sys.executable, str(MODULE), str(args_file)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
        )

    def run(self, check=False, diff=False, **params):
        proc = self.start(check=check, diff=diff, **params)
        out, err = proc.communicate(timeout=120)
        try:
            return json.loads(out)
        except json.JSONDecodeError:
            raise AssertionError(f"module printed no JSON: {out!r} {err!r}") from None

    def query(self, *keys, map_type="lmdb"):
        """What Postfix's own lookup code returns for each key (None: not found)."""
        proc = subprocess.run(
            [POSTMAP, "-c", str(self.config), "-q", "-", f"{map_type}:{self.path}"],
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


@pytest.fixture
def table(tmp_path):
    return Table(tmp_path)
