"""The dkim_keys module, run as Ansible runs it, on a real directory; and the
milter's keyring reading what it writes."""

import datetime
import grp
import json
import os
import pathlib
import stat
import subprocess
import sys

import pytest
from ansible_collections.mailops.submission.plugins.module_utils.dkim_rules import KeyEntry, KeyPolicy, plan_keys
from ansible_collections.mailops.submission.plugins.module_utils.dns_records import expected_records, zones
from dns_server import free_port, serving
from from_check.keyring import Keyring

MODULE = pathlib.Path(__file__).parents[4] / "plugins/modules/dkim_keys.py"
COLLECTIONS = pathlib.Path(__file__).parents[7]
GROUP = grp.getgrgid(os.getgid()).gr_name
DAY = datetime.date(2026, 12, 7)


def run(tmp_path, check=False, diff=True, **params):
    params = {"directory": str(tmp_path / "dkim"), "group": GROUP, "provider_domain": "runbox.com", **params}
    args = tmp_path / f"args-{os.urandom(4).hex()}.json"
    args.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": dict(params, _ansible_check_mode=check, _ansible_diff=diff)}))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(COLLECTIONS), *sys.path]))
    done = subprocess.run([sys.executable, str(MODULE), str(args)], capture_output=True, env=env, check=False)
    result = json.loads(done.stdout)
    assert b"PRIVATE KEY" not in done.stdout and b"PRIVATE KEY" not in done.stderr
    return result


def files(tmp_path):
    root = tmp_path / "dkim"
    return sorted(str(path.relative_to(root)) for path in root.rglob("*") if path.is_file()) if root.exists() else []


def test_first_run_makes_a_pending_key_per_domain_and_algorithm_readable_by_the_group_only(tmp_path):
    result = run(tmp_path, domains=["hosted.example"], today="2026-12-07", dns_timeout=0.01)
    assert result["changed"] is True
    assert sorted(result["created"]) == [
        "hosted.example ed1 (ed25519-sha256, created 2026-12-07)",
        "hosted.example rsa1 (rsa-sha256, created 2026-12-07)",
        "runbox.com ed1 (ed25519-sha256, created 2026-12-07)",
        "runbox.com rsa1 (rsa-sha256, created 2026-12-07)",
    ]
    assert {key["state"] for key in result["keys"]} == {"pending"}
    hosted = next(key for key in result["keys"] if key["domain"] == "hosted.example" and key["selector"] == "rsa1")
    assert hosted["cname"] == {
        "name": "rsa1._domainkey.hosted.example",
        "target": "rsa1.hosted.example._domainkey.runbox.com",
    }
    assert hosted["record"]["value"].startswith("v=DKIM1; k=rsa; p=MIIBIjAN")
    root = tmp_path / "dkim"
    assert stat.S_IMODE(root.stat().st_mode) == 0o2750
    for name in files(tmp_path):
        assert stat.S_IMODE((root / name).stat().st_mode) == 0o640, name
        assert (root / name).stat().st_gid == os.getgid()
    manifest = (root / "keys.json").read_text()
    assert "PRIVATE" not in manifest and len(files(tmp_path)) == 5
    assert "PRIVATE" not in json.dumps(result["diff"])
    assert "hosted.example rsa1 (rsa-sha256, created 2026-12-07): pending" in result["diff"]["after"]
    # Nothing published and no force: nothing signs yet, and the second run changes nothing.
    before = {name: (tmp_path / "dkim" / name).read_bytes() for name in files(tmp_path)}
    again = run(tmp_path, domains=["hosted.example"], today="2026-12-07", dns_timeout=0.01)
    assert again["changed"] is False and len(again["unpublished"]) == 4
    assert {name: (tmp_path / "dkim" / name).read_bytes() for name in files(tmp_path)} == before


def test_check_mode_writes_nothing(tmp_path):
    result = run(tmp_path, check=True, activate="force")
    assert result["changed"] is True and len(result["created"]) == 2
    assert not (tmp_path / "dkim").exists()


def published_zones(tmp_path):
    """The zones the manifest's keys need, as dns_records prints them."""
    keys = json.loads((tmp_path / "dkim" / "keys.json").read_text())["keys"]
    mtas = {"addresses": ["192.0.2.25"], "helo_names": []}
    dmarc = {"policy": "none", "report_address": "dmarc@runbox.com"}
    records = expected_records("runbox.com", ["hosted.example"], keys, mtas, dmarc)
    return zones(records, "runbox.com", ["hosted.example"])


def test_forced_keys_sign_at_once_and_a_rotation_waits_for_its_record(tmp_path):
    hosted = {"domains": ["hosted.example"], "activate": "force"}
    run(tmp_path, today="2026-12-07", **hosted)
    keyring = Keyring(str(tmp_path / "dkim" / "keys.json"))
    keys = keyring.signing_keys("hosted.example")
    assert [(key.domain, key.selector, key.algorithm) for key in keys] == [
        ("hosted.example", "rsa1", "rsa-sha256"),
        ("hosted.example", "ed1", "ed25519-sha256"),
    ]
    first_files = files(tmp_path)
    # 180 days after they started signing: new keys in the other slots, pending even with force.
    later = run(tmp_path, today="2027-06-05", **hosted)
    assert sorted(later["created"])[0] == "hosted.example ed2 (ed25519-sha256, created 2027-06-05)"
    assert later["activated"] == []
    # Their records not published (nothing answers on this port): they still wait.
    unreachable = {"nameservers": ["127.0.0.1"], "port": free_port(), "dns_timeout": 0.2}
    waiting = run(tmp_path, today="2027-06-06", **hosted, **unreachable)
    assert waiting["changed"] is False and len(waiting["unpublished"]) == 4
    assert [key.selector for key in keyring.signing_keys("runbox.com")] == ["rsa1", "ed1"]
    # Their records published: they sign, the old keys retire.
    directory = tmp_path / "zones"
    directory.mkdir()
    with serving(directory, published_zones(tmp_path)) as port:
        seen = run(tmp_path, today="2027-06-06", **hosted, nameservers=["127.0.0.1"], port=port)
    assert len(seen["activated"]) == 4 and len(seen["retiring"]) == 4, seen
    assert [key.selector for key in keyring.signing_keys("hosted.example")] == ["rsa2", "ed2"]
    assert set(first_files) < set(files(tmp_path))
    # Seven days on, the retiring keys and their files go.
    gone = run(tmp_path, today="2027-06-13", **hosted)
    assert len(gone["removed"]) == 4
    assert not set(first_files) & set(files(tmp_path)) - {"keys.json"}
    assert run(tmp_path, today="2027-06-13", **hosted)["changed"] is False


def test_an_emergency_rotation_replaces_every_key_once(tmp_path):
    run(tmp_path, activate="force", today="2026-12-07")
    before = files(tmp_path)
    result = run(tmp_path, today="2026-12-08", emergency_rotation="leak 1")
    assert len(result["removed"]) == 2 and len(result["activated"]) == 2
    assert {key["selector"] for key in result["keys"]} == {"rsa2", "ed2"}
    assert not set(before) & set(files(tmp_path)) - {"keys.json"}
    assert run(tmp_path, today="2026-12-08", emergency_rotation="leak 1")["changed"] is False
    # On a new host a label forces nothing: it is recorded, and the keys wait for their records.
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    new = run(fresh, emergency_rotation="leak 1", dns_timeout=0.01)
    assert {key["state"] for key in new["keys"]} == {"pending"}
    # A domain no longer hosted: its keys go.
    run(tmp_path, today="2026-12-08", emergency_rotation="leak 1", domains=["hosted.example"], activate="force")
    dropped = run(tmp_path, today="2026-12-08", emergency_rotation="leak 1")
    assert sorted(dropped["removed"])[0].startswith("hosted.example ")
    # Another provider domain: every key and its file goes, new ones wait for their records.
    kept = files(tmp_path)
    moved = run(tmp_path, provider_domain="mail.example", today="2026-12-08", dns_timeout=0.01)
    assert len(moved["removed"]) == 2 and {key["state"] for key in moved["keys"]} == {"pending"}
    assert not set(kept) & set(files(tmp_path)) - {"keys.json"}


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"rsa_bits": 1024}, "rsa_bits 1024: RSA keys have 2048 bits at least"),
        ({"retire_days": 3}, "retire_days 3"),
        ({"domains": ["bad_domain.example"]}, "bad_domain.example"),
        ({"domains": ["runbox.com"]}, "listed twice"),
        ({"domains": [".".join(["a" * 60] * 4)]}, "past DNS's 253"),
        ({"today": "07/12/2026"}, "today '07/12/2026' is not a date"),
    ],
)
def test_bad_input_is_refused_by_name_and_writes_nothing(tmp_path, params, message):
    result = run(tmp_path, **params)
    assert result["failed"] is True and message in result["msg"]
    assert not (tmp_path / "dkim").exists()


def test_a_pending_key_signs_once_its_record_is_seen():
    entries = [KeyEntry("runbox.com", "rsa-sha256", "rsa1", "active", "2026-01-01", "A", "f", "2026-01-02")]
    policy = KeyPolicy(DAY, rotation_days=180, retire_days=7)
    wanted = [("runbox.com", "rsa-sha256")]
    rotation = plan_keys(entries, wanted, policy, published=lambda entry: False)
    assert [(e.selector, e.state) for e in rotation.entries] == [("rsa1", "active"), ("rsa2", "pending")]
    pending = rotation.entries[1]
    pending.public = "B"
    unseen = plan_keys(rotation.entries, wanted, policy, published=lambda entry: False)
    assert not unseen.changed
    seen = plan_keys(unseen.entries, wanted, policy, published=lambda entry: entry.public == "B")
    assert [(e.selector, e.state, e.retire_on) for e in seen.entries] == [
        ("rsa1", "retiring", "2026-12-14"),
        ("rsa2", "active", ""),
    ]
    # A rotation due while the other slot still holds a retiring key waits for it.
    stuck = [
        KeyEntry("runbox.com", "rsa-sha256", "rsa1", "retiring", "2025-01-01", "A", "f", retire_on="2027-01-01"),
        KeyEntry("runbox.com", "rsa-sha256", "rsa2", "active", "2026-01-01", "B", "g"),
    ]
    waiting = plan_keys(stuck, wanted, policy, published=lambda entry: True)
    assert not waiting.created and waiting.waiting == [stuck[1]]


def test_a_key_ages_from_the_day_it_started_signing_and_force_never_skips_a_rotations_record():
    wanted = [("runbox.com", "rsa-sha256")]
    # Made a year ago, signing for 100 days: not due.
    late = [KeyEntry("runbox.com", "rsa-sha256", "rsa1", "active", "2025-12-07", "A", "f", "2026-08-29")]
    assert not plan_keys(late, wanted, KeyPolicy(DAY), published=lambda entry: True).changed
    # Due, with force: the new key is made and waits for its record.
    due = [KeyEntry("runbox.com", "rsa-sha256", "rsa1", "active", "2026-01-01", "A", "f", "2026-01-01")]
    plan = plan_keys(due, wanted, KeyPolicy(DAY, force=True), published=lambda entry: False)
    assert [(e.selector, e.state) for e in plan.entries] == [("rsa1", "active"), ("rsa2", "pending")]
