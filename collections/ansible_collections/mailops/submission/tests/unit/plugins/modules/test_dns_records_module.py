"""The dns_records module as Ansible runs it, against a real DNS server
(unbound) serving the zones the module prints."""

import json
import os
import pathlib
import subprocess
import sys

import pytest
from dns_server import serving

MODULE = pathlib.Path(__file__).parents[4] / "plugins/modules/dns_records.py"
COLLECTIONS = pathlib.Path(__file__).parents[7]


def run(tmp_path, **params):
    params = {
        "provider_domain": "runbox.com",
        "domains": ["hosted.example"],
        "manifest": str(tmp_path / "keys.json"),
        "mta_addresses": ["192.0.2.25", "2001:db8::25"],
        "helo_names": ["smtp.runbox.com"],
        "dmarc_report_address": "dmarc@runbox.com",
        "dns_timeout": 2,
        **params,
    }
    args = tmp_path / f"args-{os.urandom(4).hex()}.json"
    args.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": params}))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(COLLECTIONS), *sys.path]))
    done = subprocess.run([sys.executable, str(MODULE), str(args)], capture_output=True, env=env, check=False)
    return json.loads(done.stdout)


@pytest.fixture
def manifest(tmp_path):
    keys = [
        {"domain": "runbox.com", "selector": "rsa1", "algorithm": "rsa-sha256", "public": "A" * 392},
        {"domain": "hosted.example", "selector": "ed1", "algorithm": "ed25519-sha256", "public": "QUJD"},
    ]
    for key, state in zip(keys, ("active", "pending"), strict=True):
        key["state"] = state
    (tmp_path / "keys.json").write_text(json.dumps({"provider_domain": "runbox.com", "keys": keys}))


def test_the_printed_zones_once_served_pass_and_a_removed_record_is_named(tmp_path, manifest):
    printed = run(tmp_path, check=False)
    assert printed["problems"] == [] and "failed" not in printed
    zones = printed["zones"]
    assert set(zones) == {"runbox.com", "hosted.example"}
    with serving(tmp_path, zones) as port:
        assert run(tmp_path, nameservers=["127.0.0.1"], port=port)["problems"] == []
    # The hosted domain's owner has not published the CNAME of ed1, and DMARC is missing.
    zones["hosted.example"] = [
        line for line in zones["hosted.example"] if not line.startswith(("ed1._domainkey.", "_dmarc."))
    ]
    served = tmp_path / "second"
    served.mkdir()
    with serving(served, zones) as port:
        result = run(tmp_path, nameservers=["127.0.0.1"], port=port)
    assert result["failed"] is True
    assert sorted(result["problems"]) == [
        "missing: CNAME ed1._domainkey.hosted.example -> ed1.hosted.example._domainkey.runbox.com (found [])",
        'missing: TXT _dmarc.hosted.example "v=DMARC1; p=none; rua=mailto:dmarc@runbox.com; adkim=r; aspf=r"'
        " (found [])",
    ]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"mta_addresses": ["192.0.2.300"]}, "'192.0.2.300' is not an address"),
        ({"domains": ["bad_domain.example"]}, "bad_domain.example"),
        ({"dmarc_report_address": "not-an-address"}, "dmarc_report_address"),
    ],
)
def test_bad_input_is_named(tmp_path, params, message):
    result = run(tmp_path, check=False, **params)
    assert result["failed"] is True and message in result["msg"]
