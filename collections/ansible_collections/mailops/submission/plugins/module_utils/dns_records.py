# Copyright: smtp-submission developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The DNS records a deployment needs published (SPF, DKIM, DMARC), and how a
published zone is compared with them.

Pure Python, no Ansible import: the dns_records module prints and checks them,
and the validation service reads DMARC policies with ``parse_dmarc``.

Per domain (the provider's and each hosted one):
- SPF: the provider's ``_spf.<provider>`` lists the MTAs' outgoing addresses
  (``-all``); every domain includes it (``~all``, since users may also send
  through other systems); the MTAs' HELO names get ``-all`` records, the ones
  a bounce (empty envelope sender) is checked against.
- DKIM: each key's TXT record in the provider's zone, and per hosted domain
  and slot a CNAME into it (dkim_rules).
- DMARC: ``_dmarc.<domain>``: ``p=none`` with aggregate reports to the
  operator until the reports are clean, relaxed alignment; for a hosted
  domain, the provider's zone also says it takes that domain's reports
  (RFC 7489 7.1).
"""

from __future__ import annotations

from dataclasses import dataclass

from ansible_collections.mailops.submission.plugins.module_utils.dkim_rules import (
    ALGORITHMS,
    SLOTS,
    key_name,
    key_record,
    record_name,
    txt_strings,
)

DMARC_POLICIES = ("none", "quarantine", "reject")
TTL = 3600


class DmarcError(ValueError):
    """A DMARC record that cannot be read; the message says why."""


def parse_dmarc(text):
    """The tags of a DMARC record (RFC 7489 6.3), lower-cased names; DmarcError when it is not one."""
    parts = [part.strip() for part in text.split(";")]
    if not parts or parts[0].replace(" ", "") != "v=DMARC1":
        raise DmarcError(f"not a DMARC record (it must start with v=DMARC1): {text!r}")
    tags = {}
    for part in parts[1:]:
        if not part:
            continue
        name, equals, value = part.partition("=")
        if not equals:
            raise DmarcError(f"a tag without '=' ({part!r}) in {text!r}")
        tags[name.strip().lower()] = value.strip()
    if tags.get("p", "").lower() not in DMARC_POLICIES:
        raise DmarcError(f"no valid p= (none, quarantine or reject) in {text!r}")
    return tags


@dataclass(frozen=True)
class Record:
    name: str
    type: str
    value: str
    purpose: str

    def zone_line(self):
        """The record as a zone file line (TXT split into 255-octet strings)."""
        if self.type == "TXT":
            data = " ".join(f'"{chunk}"' for chunk in txt_strings(self.value))
        else:
            data = f"{self.value}."
        return f"{self.name}.\t{TTL}\tIN\t{self.type}\t{data}"


def spf_mechanisms(addresses):
    return " ".join(f"{'ip6' if ':' in address else 'ip4'}:{address}" for address in addresses)


def expected_records(provider, domains, keys, mtas, dmarc):
    """[Record] for a deployment.

    keys: the dkim_keys module's manifest entries (dicts with domain, selector,
    algorithm, public); mtas: {addresses: the MTAs' outgoing addresses or
    networks, helo_names: their HELO names}; dmarc: {policy, report_address}.
    """
    outbound, helo_names = mtas["addresses"], mtas["helo_names"]
    records = [Record(f"_spf.{provider}", "TXT", f"v=spf1 {spf_mechanisms(outbound)} -all", "SPF: the MTAs")]
    for domain in [provider, *domains]:
        records.append(Record(domain, "TXT", f"v=spf1 include:_spf.{provider} ~all", "SPF"))
        value = f"v=DMARC1; p={dmarc['policy']}; rua=mailto:{dmarc['report_address']}; adkim=r; aspf=r"
        records.append(Record(f"_dmarc.{domain}", "TXT", value, "DMARC"))
        report_domain = dmarc["report_address"].rpartition("@")[2].lower()
        if report_domain != domain and not domain.endswith(f".{report_domain}"):
            # RFC 7489 7.1: the report address's domain says it takes this domain's reports.
            records.append(Record(f"{domain}._report._dmarc.{report_domain}", "TXT", "v=DMARC1", "DMARC reports"))
    for name in helo_names:
        if name not in [provider, *domains]:
            records.append(Record(name, "TXT", f"v=spf1 include:_spf.{provider} -all", "SPF: the HELO name"))
    for key in keys:
        if not key.get("public"):
            continue
        name = key_name(key["domain"], key["selector"], provider)
        records.append(Record(name, "TXT", key_record(key["algorithm"], key["public"]), f"DKIM ({key['state']})"))
    # Every slot of every algorithm in use, from the start: a hosted domain publishes its CNAMEs once,
    # and the provider's rotations into the other slot need nothing from its owner.
    selectors = [
        slot for algorithm in ALGORITHMS if algorithm in {key["algorithm"] for key in keys} for slot in SLOTS[algorithm]
    ]
    for domain in domains:
        for selector in selectors:
            target = key_name(domain, selector, provider)
            records.append(Record(record_name(domain, selector), "CNAME", target, "DKIM (slot)"))
    return records


def zones(records, provider, domains):
    """{zone: zone file lines}: each record under the longest of the domains that holds it."""
    apexes = sorted({provider, *domains}, key=len, reverse=True)
    out = {}
    for record in records:
        zone = next((apex for apex in apexes if record.name == apex or record.name.endswith(f".{apex}")), record.name)
        out.setdefault(zone, []).append(record.zone_line())
    return out


def problems(records, lookup):
    """What the published DNS lacks or holds wrong, one line a record.

    lookup(name, type) -> [values] ([] for none; TXT values are the joined
    strings, CNAME values the target without its final dot), raising
    LookupError (a timeout) when the resolver does not answer.
    """
    found = []
    for record in records:
        label = f"{record.type} {record.name}"
        try:
            values = lookup(record.name, record.type)
        except LookupError as exc:
            found.append(f"not checked ({exc}): {label}")
            continue
        if record.type == "CNAME":
            if [value.rstrip(".").lower() for value in values] != [record.value]:
                found.append(f"{'wrong' if values else 'missing'}: {label} -> {record.value} (found {values})")
            continue
        problem = _txt_problem(record, values)
        if problem:
            found.append(f'{problem}: {label} "{record.value}" (found {values})')
    return found


def _txt_problem(record, values):
    if record.value.startswith("v=spf1"):
        return _spf_problem(record, values)
    if record.value.startswith("v=DMARC1") and record.purpose == "DMARC":
        return _dmarc_problem(values)
    if record.value.startswith("v=DKIM1"):
        wanted = _tags(record.value).get("p")
        keys = [_tags(value).get("p") for value in values if "p=" in value]
        if not keys:
            return "missing"
        return None if keys == [wanted] else "wrong key"
    return None if record.value in values else "missing"


def _spf_problem(record, values):
    """One SPF record, holding every mechanism of ours (it may hold more)."""
    spf = [value for value in values if value.lower().startswith("v=spf1")]
    if len(spf) != 1:
        return "missing" if not spf else "more than one SPF record"
    wanted = record.value.split()[1:-1]
    return None if all(term in spf[0].split() for term in wanted) else "wrong"


def _dmarc_problem(values):
    """One DMARC record that reads (its policy is the domain's to choose)."""
    dmarc = [value for value in values if value.replace(" ", "").startswith("v=DMARC1")]
    if len(dmarc) != 1:
        return "missing" if not dmarc else "more than one DMARC record"
    try:
        parse_dmarc(dmarc[0])
    except DmarcError:
        return "unreadable"
    return None


def _tags(text):
    tags = {}
    for part in text.split(";"):
        name, _, value = part.partition("=")
        tags[name.strip().lower()] = "".join(value.split())
    return tags
