#!/usr/bin/python
# Copyright: smtp-submission developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: dns_records
short_description: Print the SPF, DKIM and DMARC records a submission deployment needs, and check them
version_added: 0.5.0
description:
  - Computes, per domain (the provider's and each hosted one), the records to publish. SPF is
    C(_spf.<provider>) with the MTAs' addresses and an include of it in every domain and HELO name. DKIM is each
    key of the C(mailops.submission.dkim_keys) manifest in the provider's zone, with a CNAME per slot for hosted
    domains. DMARC is C(_dmarc.<domain>) with a report address, and the report authorisation of RFC 7489 7.1.
  - With O(check), looks each record up through the host's resolver (or O(nameservers)) and fails naming every
    record that is missing or wrong, so that the command exits non-zero. It never changes anything.
author:
  - smtp-submission developers
attributes:
  check_mode:
    support: full
    description: The same as a normal run; the module changes nothing.
  diff_mode:
    support: none
  platform:
    platforms: posix
requirements:
  - dnspython (Debian's C(python3-dnspython)) for O(check).
options:
  provider_domain:
    description: The provider's domain.
    type: str
    required: true
  domains:
    description: The hosted domains.
    type: list
    elements: str
    default: []
  manifest:
    description: The DKIM key manifest (C(keys.json) of M(mailops.submission.dkim_keys)); absent means no key yet.
    type: path
    default: /etc/dkim/keys.json
  mta_addresses:
    description: The addresses (or networks) the MTAs send from, for SPF.
    type: list
    elements: str
    required: true
  helo_names:
    description: The MTAs' HELO names, which bounces are checked against.
    type: list
    elements: str
    default: []
  dmarc_policy:
    description: The DMARC policy to publish. Start at V(none) and raise it once the reports show only your mail.
    type: str
    choices: [none, quarantine, reject]
    default: none
  dmarc_report_address:
    description: Where receivers send DMARC aggregate reports.
    type: str
    required: true
  check:
    description: Look the records up and fail naming each one missing or wrong.
    type: bool
    default: true
extends_documentation_fragment:
  - mailops.submission.dns
"""

EXAMPLES = r"""
- name: Print and check the records of runbox.com and hosted.example
  mailops.submission.dns_records:
    provider_domain: runbox.com
    domains: [hosted.example]
    mta_addresses: [192.0.2.25, "2001:db8::25"]
    helo_names: [smtp.runbox.com]
    dmarc_report_address: dmarc-reports@runbox.com
"""

RETURN = r"""
records:
  description: Every record to publish.
  returned: always
  type: list
  elements: dict
  sample: [{name: _spf.runbox.com, type: TXT, value: "v=spf1 ip4:192.0.2.25 -all", purpose: "SPF: the MTAs"}]
zones:
  description: Zone file lines, by zone.
  returned: always
  type: dict
problems:
  description: Each record missing or wrong in DNS (empty when O(check) is false).
  returned: always
  type: list
  elements: str
"""

import dataclasses
import ipaddress
import json

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.mailops.submission.plugins.module_utils.dns_lookup import Resolver
from ansible_collections.mailops.submission.plugins.module_utils.dns_name import DnsNameError, dns_name
from ansible_collections.mailops.submission.plugins.module_utils.dns_records import expected_records, problems, zones
from ansible_collections.mailops.submission.plugins.module_utils.sender_address import AddressError, normalize_sender


def bad_input(params):
    """Each option value the rules refuse, named."""
    found = []
    for value in [params["provider_domain"], *params["domains"], *params["helo_names"]]:
        try:
            dns_name(value)
        except DnsNameError as exc:
            found.append(str(exc))
    for value in params["mta_addresses"]:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            found.append(f"mta_addresses: {value!r} is not an address or network")
    try:
        normalize_sender(params["dmarc_report_address"])
    except AddressError as exc:
        found.append(f"dmarc_report_address: {exc}")
    return found


def read_keys(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)["keys"]
    except FileNotFoundError:
        return []


def run(params):
    found = bad_input(params)
    if found:
        return {"failed": True, "msg": "; ".join(found)}
    provider = dns_name(params["provider_domain"])
    domains = [dns_name(domain) for domain in params["domains"] if dns_name(domain) != provider]
    mtas = {"addresses": params["mta_addresses"], "helo_names": [dns_name(name) for name in params["helo_names"]]}
    dmarc = {"policy": params["dmarc_policy"], "report_address": params["dmarc_report_address"]}
    records = expected_records(provider, domains, read_keys(params["manifest"]), mtas, dmarc)
    result = {
        "changed": False,
        "records": [dataclasses.asdict(record) for record in records],
        "zones": zones(records, provider, domains),
        "problems": [],
    }
    if params["check"]:
        resolver = Resolver(params["dns_timeout"], params["nameservers"], params["port"])
        result["problems"] = problems(records, resolver.values)
        if result["problems"]:
            result.update(failed=True, msg=f"{len(result['problems'])} records are not published as they must be")
    return result


def main():
    module = AnsibleModule(
        argument_spec={
            "provider_domain": {"type": "str", "required": True},
            "domains": {"type": "list", "elements": "str", "default": []},
            "manifest": {"type": "path", "default": "/etc/dkim/keys.json"},
            "mta_addresses": {"type": "list", "elements": "str", "required": True},
            "helo_names": {"type": "list", "elements": "str", "default": []},
            "dmarc_policy": {"type": "str", "choices": ["none", "quarantine", "reject"], "default": "none"},
            "dmarc_report_address": {"type": "str", "required": True},
            "check": {"type": "bool", "default": True},
            "nameservers": {"type": "list", "elements": "str"},
            "port": {"type": "int", "default": 53},
            "dns_timeout": {"type": "float", "default": 5},
        },
        supports_check_mode=True,
    )
    try:
        result = run(module.params)
    except ImportError as exc:
        result = {"failed": True, "msg": f"dnspython (python3-dnspython) is needed to check the records: {exc}"}
    except (OSError, ValueError, KeyError) as exc:
        result = {"failed": True, "msg": f"the key manifest {module.params['manifest']}: {exc}"}
    if result.get("failed"):
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
