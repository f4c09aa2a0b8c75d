"""Send one authenticated message to every port of every service name on the local
instances and print what each answered. Exits non-zero unless every one got 250."""

import json
import pathlib
import subprocess
import sys
import uuid

import yaml

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "collections"))
sys.path.insert(0, str(REPO / "tests"))
from ansible_collections.mailops.submission.plugins.module_utils.listeners import listener_hostname  # noqa: E402
from host_probe import PROBE_B64  # noqa: E402

VARS = REPO / "inventory/local/group_vars/submission"


def load_vars():
    merged = {}
    for path in sorted(VARS.glob("*.yml")):
        merged.update(yaml.safe_load(path.read_text()))
    return merged


def main():
    config = load_vars()
    hosts = yaml.safe_load((REPO / "inventory/local/hosts.yml").read_text())["submission"]["hosts"]
    account = config["submission_verify_accounts"][0]
    cases = []
    for listener in config["submission_common_listeners"]:
        hostname = listener_hostname(listener, config["submission_domain"])
        for port in listener["ports"]:
            token = uuid.uuid4().hex
            data = f"From: <{account['address']}>\r\nSubject: deploy check {token}\r\n\r\nIt works.\r\n"
            cases.append(
                {
                    "host": hostname,
                    "port": port,
                    "starttls": True,
                    "login": account["login"],
                    "password": account["password"],
                    "mail_from": account["address"],
                    "rcpt_to": [config["submission_verify_recipient"]],
                    "data": data,
                }
            )
    ok = True
    for host in hosts:
        out = subprocess.run(
            # The cases hold a password: on standard input, not the command line.
            ["docker", "exec", "-i", host, "sh", "-c", f'python3 -c "$(echo {PROBE_B64} | base64 -d)" -'],
            input=json.dumps(cases),
            check=True,
            capture_output=True,
            text=True,
        )
        for case, result in zip(cases, json.loads(out.stdout), strict=True):
            data = result.get("data") or [0, result.get("error") or result.get("auth") or result]
            tls = result.get("tls", {}).get("version", "no TLS")
            target = f"{case['host']}:{case['port']}"
            print(f"{host:14} {target:24} {tls:8} AUTH {case['login']:6} -> {data[0]} {data[1]}")
            ok = ok and data[0] == 250
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
