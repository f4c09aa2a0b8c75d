"""dkim_keys with a key store: the keys made once on the controller, vault-encrypted,
and every host given the same. Run for real with ansible-playbook: two hosts
(local connections, a keys directory each) at the same time, as a fleet's MTAs."""

import grp
import json
import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).parents[8]
GROUP = grp.getgrgid(os.getgid()).gr_name


@pytest.fixture
def fleet(tmp_path):
    """fleet(*hosts, vault=True, check=False, **task_options) -> (exit code, output, json report)."""
    password = tmp_path / "vault-password"
    password.write_text("a-test-vault-secret\n")

    def run(*hosts, vault=True, check=False, **options):
        inventory = {"all": {"hosts": {name: {"keys_dir": str(tmp_path / name)} for name in hosts}}}
        (tmp_path / "hosts.json").write_text(json.dumps(inventory))
        task = {
            "directory": "{{ keys_dir }}",
            "group": GROUP,
            "provider_domain": "runbox.com",
            "domains": ["hosted.example"],
            "activate": "force",
            "today": "2026-12-07",
            "store": str(tmp_path / "store"),
            **options,
        }
        play = {
            "hosts": "all",
            "connection": "local",
            "gather_facts": False,
            "tasks": [{"name": "Keep the keys", "mailops.submission.dkim_keys": task, "register": "keys"}],
        }
        (tmp_path / "play.yml").write_text(json.dumps([play]))
        env = dict(
            os.environ,
            ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
            ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
            PATH=f"{pathlib.Path(sys.executable).parent}:{os.environ['PATH']}",
        )
        env.pop("ANSIBLE_VAULT_PASSWORD_FILE", None)
        if vault:
            env["ANSIBLE_VAULT_PASSWORD_FILE"] = str(password)
        command = ["ansible-playbook", "-i", str(tmp_path / "hosts.json"), "--forks", "4", "--diff"]
        command += ["-e", f"ansible_python_interpreter={sys.executable}"] + (["--check"] if check else [])
        done = subprocess.run(
            [*command, str(tmp_path / "play.yml")], capture_output=True, text=True, env=env, cwd=REPO, check=False
        )
        out = done.stdout + done.stderr
        assert "PRIVATE KEY" not in out
        report, _ = json.JSONDecoder().raw_decode(done.stdout[done.stdout.index("{") :])
        results = {name: result for name, result in report["plays"][0]["tasks"][0]["hosts"].items()}
        return done.returncode, out, results

    return run


def keys_of(directory):
    """{relative name: content} of a keys directory."""
    return {
        str(path.relative_to(directory)): path.read_bytes() for path in sorted(directory.rglob("*")) if path.is_file()
    }


def test_two_hosts_at_once_get_the_same_keys_made_once_and_kept_encrypted(fleet, tmp_path):
    rc, out, results = fleet("mta1", "mta2")
    assert rc == 0, out[-3000:]
    first, second = keys_of(tmp_path / "mta1"), keys_of(tmp_path / "mta2")
    assert first == second and len(first) == 5  # four keys and the manifest
    # One host made the keys (the store changed once), the other was given them.
    assert sorted(result["store_changed"] for result in results.values()) == [False, True]
    assert all(result["changed"] for result in results.values())
    manifest = json.loads(first["keys.json"])
    assert {key["state"] for key in manifest["keys"]} == {"active"}
    store = tmp_path / "store"
    assert (store / "keys.json").read_bytes() == first["keys.json"]
    vaulted = sorted(path for path in store.rglob("*.pem.vault"))
    assert len(vaulted) == 4
    for path in vaulted:
        assert path.read_bytes().startswith(b"$ANSIBLE_VAULT;"), path
        assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert {str(path.relative_to(store))[: -len(".vault")] for path in vaulted} == {
        name for name in first if name.endswith(".pem")
    }
    # What the result says is public: the records to publish.
    rsa = next(key for key in results["mta1"]["keys"] if key["selector"] == "rsa1" and key["domain"] == "runbox.com")
    assert rsa["record"]["value"].startswith("v=DKIM1; k=rsa; p=MIIB")

    # A second run changes nothing anywhere.
    rc, out, results = fleet("mta1", "mta2")
    assert rc == 0, out[-3000:]
    assert not any(result["changed"] for result in results.values()), out[-3000:]
    assert keys_of(tmp_path / "mta1") == first

    # A host added later (a new or rebuilt MTA) gets the same keys; the store is not touched.
    before = keys_of(store)
    rc, out, results = fleet("mta1", "mta2", "mta3")
    assert rc == 0, out[-3000:]
    assert keys_of(tmp_path / "mta3") == first
    assert results["mta3"]["changed"] is True and results["mta3"]["store_changed"] is False
    assert keys_of(store) == before


def test_a_rotation_reaches_every_host_in_the_same_run(fleet, tmp_path):
    rc, out, _ = fleet("mta1", "mta2")
    assert rc == 0, out[-3000:]
    # 181 days later: a new key in each pair's other slot, pending (no record published), on both hosts.
    rc, out, results = fleet(
        "mta1", "mta2", today="2027-06-06", activate="published", dns_timeout=0.01, nameservers=["127.0.0.1"], port=9
    )
    assert rc == 0, out[-3000:]
    first, second = keys_of(tmp_path / "mta1"), keys_of(tmp_path / "mta2")
    assert first == second and len(first) == 9
    states = {(key["domain"], key["selector"]): key["state"] for key in json.loads(first["keys.json"])["keys"]}
    assert states[("runbox.com", "rsa2")] == "pending" and states[("runbox.com", "rsa1")] == "active"
    created = [result["created"] for result in results.values()]
    assert sorted(map(len, created)) == [0, 4], created


def test_an_emergency_rotation_replaces_every_key_on_every_host(fleet, tmp_path):
    rc, out, _ = fleet("mta1", "mta2")
    assert rc == 0, out[-3000:]
    old = keys_of(tmp_path / "mta1")
    rc, out, _ = fleet("mta1", "mta2", emergency_rotation="leak 1")
    assert rc == 0, out[-3000:]
    new = keys_of(tmp_path / "mta1")
    assert new == keys_of(tmp_path / "mta2")
    assert not set(old) - {"keys.json"} & set(new), "the old key files are gone"
    assert len(list((tmp_path / "store").rglob("*.pem.vault"))) == 4


def test_without_a_vault_secret_no_key_is_written_in_clear(fleet, tmp_path):
    rc, _, results = fleet("mta1", vault=False)
    assert rc == 2
    assert "a new key would be written in clear" in results["mta1"]["msg"]
    assert not list((tmp_path / "store").rglob("*.pem*"))
    assert not (tmp_path / "store" / "keys.json").exists()
    assert not (tmp_path / "mta1").exists()


def test_a_store_file_that_does_not_hold_its_key_stops_the_run_naming_it(fleet, tmp_path):
    rc, out, _ = fleet("mta1")
    assert rc == 0, out[-3000:]
    vaulted = sorted((tmp_path / "store").rglob("*.pem.vault"))
    vaulted[0].write_bytes(vaulted[1].read_bytes())
    before = keys_of(tmp_path / "mta1")
    rc, out, results = fleet("mta1")
    assert rc == 2
    assert f"{vaulted[0]} does not hold the key" in results["mta1"]["msg"]
    assert keys_of(tmp_path / "mta1") == before


def test_check_mode_writes_nothing_on_the_controller_or_the_hosts(fleet, tmp_path):
    rc, out, results = fleet("mta1", "mta2", check=True)
    assert rc == 0, out[-3000:]
    assert all(result["changed"] and len(result["created"]) == 4 for result in results.values())
    assert not (tmp_path / "mta1").exists() and not (tmp_path / "mta2").exists()
    assert not (tmp_path / "store").exists()
    # With the store made, check mode reports a host that lacks the keys, and writes nothing there.
    assert fleet("mta1")[0] == 0
    rc, out, results = fleet("mta1", "mta3", check=True)
    assert rc == 0, out[-3000:]
    assert results["mta1"]["changed"] is False and results["mta3"]["changed"] is True
    assert not (tmp_path / "mta3").exists()


def test_bad_input_is_refused_before_anything_is_written(fleet, tmp_path):
    rc, _, results = fleet("mta1", domains=["hosted.example", "not a domain"])
    assert rc == 2
    assert "not a domain" in results["mta1"]["msg"]
    assert not (tmp_path / "store").exists() and not (tmp_path / "mta1").exists()
