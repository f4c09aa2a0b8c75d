"""playbooks/allowlist.yml applied a data file: the tables Postfix reads hold its
pairs, and the logins send (or are refused) accordingly.

The data file is the one given to the playbook; its path is in
SUBMISSION_VERIFY_ALLOWLIST_DATA (molecule's default scenario sets it to
molecule/default/vars/allowlist-changes.yml). Only submission_allowlist_validated is
read: present pairs must be allowed, absent pairs refused with 553 5.7.1.
"""

import json
import os
import pathlib

import pytest
import yaml
from host_probe import sender_session

pytestmark = pytest.mark.allowlist_data


@pytest.fixture(scope="module")
def changes():
    path = os.environ.get("SUBMISSION_VERIFY_ALLOWLIST_DATA")
    if not path:
        raise pytest.UsageError("SUBMISSION_VERIFY_ALLOWLIST_DATA must name the data file given to allowlist.yml")
    pairs = yaml.safe_load(pathlib.Path(path).read_text())["submission_allowlist_validated"]
    states = {pair.get("state", "present") for pair in pairs}
    assert states == {"present", "absent"}, f"{path} must add a pair and withdraw one, to check both: {states}"
    return pairs


def top_level_items(value):
    """A Postfix list's items, commas or spaces apart, a {...} group kept whole."""
    items, depth, current = [], 0, ""
    for char in value:
        depth += {"{": 1, "}": -1}.get(char, 0)
        if depth == 0 and char in ", \t":
            if current:
                items.append(current)
            current = ""
        else:
            current += char
    return items + ([current] if current else [])


def test_the_tables_postfix_reads_hold_the_data_files_pairs(host, changes):
    """Each table of smtpd_sender_login_maps, asked as Postfix asks it: the
    validated pairs are in the lmdb table or in the validation service's store."""
    tables = top_level_items(host.check_output("postconf -h smtpd_sender_login_maps"))
    for pair in changes:
        logins = []
        for table in tables:
            # From the queue directory: socketmap paths there are relative to it, as smtpd sees them.
            found = host.run('cd "$(postconf -h queue_directory)" && postmap -q %s %s', pair["sender"].lower(), table)
            assert found.rc in (0, 1), f"{table}: {found.stderr}"
            logins += found.stdout.strip().split(",") if found.rc == 0 else []
        if pair.get("state", "present") == "present":
            assert pair["login"] in logins, f"{pair['sender']}: {pair['login']} not in {logins}"
        else:
            assert pair["login"] not in logins, f"{pair['sender']}: {pair['login']} still in {logins}"


def test_logins_send_as_the_data_file_says(probe, deployment, changes):
    endpoint = deployment.endpoints[0]
    by_address = {account.address: account for account in deployment.accounts}
    unknown = {pair["login"] for pair in changes} - set(by_address)
    assert not unknown, f"the data file names logins without a verification account: {sorted(unknown)}"
    cases = [
        sender_session(endpoint, by_address[pair["login"]], pair["sender"], deployment.recipient) for pair in changes
    ]
    for pair, result in zip(changes, probe.run(cases), strict=True):
        rcpt = (result.get("rcpt") or [[0, str(result)]])[0]
        if pair.get("state", "present") == "present":
            assert rcpt[0] == 250, f"{pair['login']} as {pair['sender']}: {result}"
        else:
            assert rcpt[0] == 553 and "5.7.1" in rcpt[1], f"{pair['login']} as {pair['sender']}: {result}"


STORE_ROWS = (
    "import json, sqlite3, sys; db = sqlite3.connect('file:' + sys.argv[1] + '?mode=ro', uri=True); "
    "print(json.dumps(db.execute('SELECT sender, login, source FROM validated_senders').fetchall()))"
)


def test_the_store_holds_only_accounts_pairs_and_the_inventorys_as_listed(host, accounts, changes):
    """After the playbook, the store's inventory pairs are what the inventory and
    the data file list, and no pair belongs to a login that is no account."""
    variables = host.ansible.get_variables()
    if not variables.get("submission_validation_enabled", True):
        pytest.skip("no validation service: the validated pairs are in the lmdb table")
    store = variables.get("submission_common_validation_store", "/var/lib/sender-validation/senders.sqlite")
    rows = json.loads(host.check_output("python3 -c %s %s", STORE_ROWS, store))
    logins = {account["address"].lower() for account in accounts}
    listed = {(s.lower(), a["address"].lower()) for a in accounts for s in a.get("external_senders", [])}
    listed |= {(p["sender"].lower(), p["login"]) for p in changes if p.get("state", "present") == "present"}
    # side_effect.yml added a confirmation of carol's, which stays, and one of a removed account, which goes.
    assert ["carol.home@gmail.example", "carol@runbox.com", "user"] in rows, f"a user's pair was removed: {rows}"
    strangers = [row for row in rows if row[1] not in logins]
    assert not strangers, f"pairs of logins that are no account: {strangers}"
    inventory = {(sender, login) for sender, login, source in rows if source == "inventory"}
    assert inventory == listed, f"inventory pairs {sorted(inventory)} != listed {sorted(listed)}"
