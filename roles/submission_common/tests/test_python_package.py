"""submission_common's package install, run for real with ansible-playbook
into a temporary directory: what the source has is installed, what it no
longer has goes, and a second run changes nothing."""

import json
import pathlib
import shutil

REPO = pathlib.Path(__file__).resolve().parents[3]
SOURCE = REPO / "services" / "auth_relay" / "auth_relay"


def install(run_play, dest):
    include = {"name": "submission_common", "tasks_from": "python_package"}
    play_vars = {
        "submission_common_package_source": str(SOURCE),
        "submission_common_package_dest": dest,
        "submission_common_package_files": ["*.py"],
        "submission_common_package_notify": [],
    }
    return run_play(play_vars, {"tasks": [{"name": "Install", "ansible.builtin.include_role": include}]})


def listed(directory):
    """The package's files: what Python imports, not the archive's stamp."""
    return sorted(path.name for path in directory.iterdir() if path.name != ".archive-sha1")


def changed(out):
    report, _ = json.JSONDecoder().raw_decode(out[out.index("{") :])
    return report["stats"]["localhost"]["changed"]


def test_the_package_is_installed_once_and_stale_files_go(run_play, tmp_path):
    # A destination written with a trailing slash names the same directory.
    dest = tmp_path / "lib" / "auth_relay"
    rc, out = install(run_play, f"{dest}/")
    assert rc == 0, out[-3000:]
    sources = sorted(path.name for path in SOURCE.glob("*.py"))
    assert listed(dest) == sources
    assert (dest / "relay.py").read_bytes() == (SOURCE / "relay.py").read_bytes()

    rc, out = install(run_play, str(dest))
    assert rc == 0, out[-3000:]
    assert changed(out) == 0, "a second run changed something"

    # What an earlier version had: a module, a sourceless .pyc beside the
    # sources (Python imports it) and Python's byte code cache. The package's
    # next version replaces the directory whole.
    (dest / "gone.py").write_text("print('old')\n")
    (dest / "gone.pyc").write_bytes(b"\0")
    (dest / "__pycache__").mkdir(exist_ok=True)
    (dest / "__pycache__" / "relay.cpython-311.pyc").write_bytes(b"\0")
    (dest.parent / "auth_relay.tar").write_bytes(b"an older archive")
    (dest / ".archive-sha1").write_text("the older archive's checksum\n")
    rc, out = install(run_play, f"{dest}/.")
    assert rc == 0, out[-3000:]
    assert changed(out) > 0
    assert listed(dest) == sources
    assert oct(dest.stat().st_mode & 0o777) == "0o755"
    assert {oct(path.stat().st_mode & 0o777) for path in dest.iterdir()} == {"0o644"}

    # An unpack that failed half way, or a directory removed by hand: the
    # next run unpacks again although the archive on the host is current.
    shutil.rmtree(dest)
    rc, out = install(run_play, str(dest))
    assert rc == 0, out[-3000:]
    assert listed(dest) == sources
    assert sorted(path.name for path in dest.parent.iterdir()) == ["auth_relay", "auth_relay.tar"]
