"""Role tests run a role for real with ansible-playbook on this machine."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture
def run_play(tmp_path):
    """run_play(play_vars, play_body, *options) -> (exit code, stdout and stderr)
    of ansible-playbook on localhost, with this repository's roles and
    collection: one play with play_vars and play_body (its roles or tasks),
    both mappings."""

    def run(play_vars, play_body, *options, callback="ansible.builtin.json"):
        playbook = tmp_path / "play.yml"
        play = {"hosts": "localhost", "connection": "local", "gather_facts": False, "vars": play_vars, **play_body}
        playbook.write_text(json.dumps([play], indent=2))  # JSON is YAML
        env = dict(
            os.environ,
            ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
            ANSIBLE_ROLES_PATH=str(REPO / "roles"),
            ANSIBLE_STDOUT_CALLBACK=callback,
            ANSIBLE_LOCALHOST_WARNING="false",
            PATH=f"{pathlib.Path(sys.executable).parent}:{os.environ['PATH']}",
        )
        command = ["ansible-playbook", "-i", "localhost,", "-e", f"ansible_python_interpreter={sys.executable}"]
        run = subprocess.run(
            [*command, *options, str(playbook)], capture_output=True, text=True, env=env, cwd=REPO, check=False
        )
        return run.returncode, run.stdout + run.stderr

    return run


@pytest.fixture
def play_stats():
    """play_stats(output) -> the recap (stats) for localhost of a run with the json callback."""

    def stats(out):
        report, _ = json.JSONDecoder().raw_decode(out[out.index("{") :])
        return report["stats"]["localhost"]

    return stats
