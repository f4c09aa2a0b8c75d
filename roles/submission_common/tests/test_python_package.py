"""submission_common's package install, run for real with ansible-playbook
into a temporary directory: what the source has is installed, what it no
longer has goes, and a second run changes nothing."""

import json
import pathlib

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


def changed(out):
    report, _ = json.JSONDecoder().raw_decode(out[out.index("{") :])
    return report["stats"]["localhost"]["changed"]


def test_the_package_is_installed_once_and_stale_files_go(run_play, tmp_path):
    # A destination written with a trailing slash names the same directory.
    dest = tmp_path / "lib" / "auth_relay"
    rc, out = install(run_play, f"{dest}/")
    assert rc == 0, out[-3000:]
    sources = sorted(path.name for path in SOURCE.glob("*.py"))
    assert sorted(path.name for path in dest.iterdir()) == sources
    assert (dest / "relay.py").read_bytes() == (SOURCE / "relay.py").read_bytes()

    rc, out = install(run_play, str(dest))
    assert rc == 0, out[-3000:]
    assert changed(out) == 0, "a second run changed something"

    # A module an earlier version had, a sourceless .pyc beside the sources
    # (Python imports it), and Python's own byte code cache (which it ignores
    # once the source is gone).
    (dest / "gone.py").write_text("print('old')\n")
    (dest / "gone.pyc").write_bytes(b"\0")
    (dest / "__pycache__").mkdir(exist_ok=True)
    (dest / "__pycache__" / "relay.cpython-311.pyc").write_bytes(b"\0")
    rc, out = install(run_play, f"{dest}/.")
    assert rc == 0, out[-3000:]
    assert not (dest / "gone.py").exists() and not (dest / "gone.pyc").exists()
    assert (dest / "__pycache__" / "relay.cpython-311.pyc").exists()
    assert sorted(path.name for path in dest.glob("*.py")) == sources
