"""The From header: a message shows only an address its login may send as.

Each verification account logs in, gives its own address as MAIL FROM (which
the envelope check accepts) and sends a message whose From header takes one of
the forms below. Every form naming one mailbox is expected to pass exactly when
the envelope check would pass that mailbox (tests/sender_expectations.py: the
inventory read as Postfix reads the tables); every other form is refused. The
answer comes at the end of DATA: 250, or 550 5.7.1 with a text that names the
header's address.
"""

import re

import pytest
from host_probe import authenticated
from sender_expectations import allowed, owners

# Run on a single host and on every MTA of a fleet (molecule scenario fleet).
pytestmark = pytest.mark.fleet

FOREIGN = "ceo@bank.example"
# postconf -P: a service whose smtpd_milters is overridden to nothing.
SWITCHED_OFF = re.compile(r"^(\S+)/smtpd_milters\s*=\s*$")


def header_forms(account, accounts):
    """(name, From header lines, the one mailbox they name or None) for an account."""
    address = account.address
    local, domain = address.split("@")
    own = next(a for a in accounts if a["address"].lower() == address.lower())
    other = next(a["address"] for a in accounts if a["address"].lower() != address.lower())
    forms = [
        ("bare address", [address], address),
        ("display name", [f"Someone <{address}>"], address),
        ("quoted display name with a comma", [f'"Smith, {local}" <{address}>'], address),
        ("encoded display name", [f"=?utf-8?q?J=C3=B6rg_{local}?= <{address}>"], address),
        ("comment after the address", [f"{address} (at home)"], address),
        ("folded", [f"Someone\r\n <{address}>"], address),
        ("upper case", [address.upper()], address),
        ("+tag", [f"{local}+lists@{domain}"], f"{local}+lists@{domain}"),
        ("another user's address", [other], other),
        ("a foreign address", [FOREIGN], FOREIGN),
        ("own address as the display name of a foreign one", [f'"{address}" <{FOREIGN}>'], FOREIGN),
        ("look-alike domain", [f"{local}@{domain}.evil.example"], f"{local}@{domain}.evil.example"),
        ("look-alike label", [f"{local}@{domain.replace('o', '0', 1)}"], f"{local}@{domain.replace('o', '0', 1)}"),
        ("two From headers", [address, address], None),
        ("two mailboxes", [f"{address}, {FOREIGN}"], None),
        ("an encoded word hiding a foreign address", ["=?utf-8?q?ceo=40bank.example?="], None),
        ("a group", [f"team: {address};"], None),
        ("no From header", [], None),
        ("an empty address", ["<>"], None),
        ("a source route", [f"<@relay.example:{address}>"], None),
        # What a recipient's client shows must be the address judged (issue 21).
        ("a display name showing a foreign address", [f'"{FOREIGN}" <{address}>'], None),
        ("a comment showing a foreign address", [f"{address} ({FOREIGN})"], None),
        ("a quoted local part", [f'"{local}+{FOREIGN}"@{domain}'], None),
        ("an encoded word in the domain", [f"{local}@=?utf-8?q?{domain}?="], None),
    ]
    forms += [(f"alias {alias}", [f"Alias <{alias}>"], alias) for alias in own.get("aliases", [])]
    forms += [(f"owned domain {d}", [f"anyone@{d}"], f"anyone@{d}") for d in own.get("domains", [])]
    forms += [(f"validated {sender}", [sender], sender) for sender in own.get("external_senders", [])]
    return forms


def submission(endpoint, account, from_lines, recipient):
    """A probe case: the account logs in, sends as its own address (which the
    envelope check accepts), and its message has these From header lines."""
    headers = "".join(f"From: {line}\r\n" for line in from_lines)
    return authenticated(
        endpoint,
        account,
        recipient,
        data=f"{headers}To: <{recipient}>\r\nSubject: header From check\r\n\r\nA line.\r\n",
    )


def test_every_login_shows_only_its_own_addresses(probe, deployment, accounts):
    keys = owners(accounts)
    cases, expected = [], []
    for endpoint in deployment.first_endpoint_of_each_listener():
        for account in deployment.accounts:
            for name, lines, mailbox in header_forms(account, accounts):
                ok = mailbox is not None and allowed(keys, account.address, mailbox)
                cases.append(submission(endpoint, account, lines, deployment.recipient))
                expected.append((endpoint.label, account, name, mailbox, ok))
    assert any(ok for *_, ok in expected) and not all(ok for *_, ok in expected), "the matrix must hold both outcomes"
    assert len({name for _, _, name, _, _ in expected}) >= 15
    failures = []
    for (label, account, name, mailbox, ok), result in zip(expected, probe.run(cases), strict=True):
        data = result.get("data") or [0, str(result)]
        if ok and data[0] != 250:
            failures.append(f"{label} {account.login}, {name}: refused but is theirs: {data}")
        if not ok:
            if data[0] != 550 or "5.7.1" not in data[1]:
                failures.append(f"{label} {account.login}, {name}: expected 550 5.7.1, got {data}")
            elif mailbox is not None and f"<{mailbox.lower()}>" not in data[1].lower():
                failures.append(f"{label} {account.login}, {name}: the refusal does not name <{mailbox}>: {data}")
    assert not failures, f"{len(failures)} of {len(cases)} wrong:\n" + "\n".join(failures)


def test_sender_and_nul_are_judged_too(probe, deployment):
    """Sender is shown by clients as the author too, and Postfix hands a milter
    C strings: a NUL would hide what follows it from the check
    (message_reject_characters refuses it before)."""
    account = deployment.accounts[0]
    endpoint = deployment.first_endpoint_of_each_listener()[0]
    body = f"To: <{deployment.recipient}>\r\nSubject: authors\r\n\r\nA line.\r\n"
    cases = [
        authenticated(endpoint, account, deployment.recipient, data=f"From: {account.address}\r\n{body}"),
        authenticated(
            endpoint, account, deployment.recipient, data=f"From: {account.address}\r\nSender: {FOREIGN}\r\n{body}"
        ),
        authenticated(endpoint, account, deployment.recipient, data=f"From: {account.address}\0{FOREIGN}\r\n{body}"),
    ]
    own, sender, nul = (result.get("data") or [0, str(result)] for result in probe.run(cases))
    assert own[0] == 250, own
    assert sender[0] == 550 and f"the Sender header's address <{FOREIGN}>" in sender[1], sender
    assert 500 <= nul[0] < 600, nul


def test_long_author_headers_are_refused_unread_and_the_next_message_passes(probe, deployment):
    """A From header of 100 kB, or 20 kB of quotes, once held the milter's one
    thread for minutes: both, and the next sender's message, got 451 (issue 21).
    Past RFC 5322's 998 characters a header is refused without being read, and
    an ordinary message sent after them is accepted."""
    account = deployment.accounts[0]
    endpoint = deployment.first_endpoint_of_each_listener()[0]
    body = f"To: <{deployment.recipient}>\r\nSubject: long authors\r\n\r\nA line.\r\n"
    own = f"From: {account.address}\r\n"
    long_headers = {"From": ("From: @@LONG@@\r\n", "(c)", 33000), "Sender": (own + "Sender: @@LONG@@\r\n", '"', 20000)}
    cases = []
    for headers, text, count in long_headers.values():
        case = authenticated(endpoint, account, deployment.recipient, data=headers + body)
        cases.append(dict(case, header_fills={"@@LONG@@": [text, count]}))
    for name, result in zip(long_headers, probe.run(cases), strict=True):
        answer = result.get("data") or [0, str(result)]
        print(f"{name}: {answer[0]} after {result.get('data_seconds')} s")
        assert answer[0] == 550 and f"the {name} header is" in answer[1] and "at most 998" in answer[1], answer
    honest = probe.one(authenticated(endpoint, account, deployment.recipient, data=own + body))
    assert (honest.get("data") or [0])[0] == 250, honest


@pytest.fixture
def milter_stopped(host):
    with host.sudo():
        assert host.run("systemctl stop from-check").rc == 0
    try:
        yield
    finally:
        with host.sudo():
            host.run("systemctl start from-check")


# In a fleet the tests of each MTA run side by side, and some probe every MTA
# (test_fleet.py): with this host's milter stopped they would meet 454s.
@pytest.mark.stops_a_service
def test_a_stopped_milter_defers_and_nothing_passes_unchecked(probe, deployment, host, milter_stopped):
    account = deployment.accounts[0]
    endpoint = deployment.first_endpoint_of_each_listener()[0]
    result = probe.one(submission(endpoint, account, [account.address], deployment.recipient))
    # smtpd finds the milter gone when the session starts and defers every
    # command after the greeting (STARTTLS included), or the message itself.
    replies = [result[step] for step in ("starttls", "auth", "mail") if step in result]
    replies += result.get("rcpt", []) + ([result["data"]] if "data" in result else [])
    first_refusal = next((reply for reply in replies if reply[0] >= 400), None)
    assert first_refusal is not None and 400 <= first_refusal[0] < 500, f"with the milter stopped: {result}"
    assert (result.get("data") or [0])[0] != 250, f"accepted unchecked: {result}"


def test_the_milter_runs_starts_at_boot_and_listens_for_postfix_only(host):
    milter = host.service("from-check")
    assert milter.is_running
    assert milter.is_enabled
    path = host.ansible.get_variables().get("submission_from_check_socket", "/var/spool/postfix/from-check/milter.sock")
    socket = host.file(path)
    assert socket.is_socket
    assert (socket.user, socket.group) == ("from-check", "postfix")
    assert socket.mode & 0o007 == 0, oct(socket.mode)
    assert host.file(path.rsplit("/", 1)[0]).mode & 0o007 == 0


def switched_off_services(listeners):
    """The master.cf services of the listeners whose header_from_check is false."""
    services = set()
    for listener in listeners:
        if listener.get("header_from_check", True):
            continue
        address = f"[{listener['address']}]" if ":" in listener["address"] else listener["address"]
        if listener.get("pregreet"):
            services.add(f"smtpd-{listener['name']}/pass")
        else:
            services |= {f"{address}:{port}/inet" for port in listener["ports"]}
        services |= {f"{address}:{port}/inet" for port in listener.get("implicit_tls_ports", [])}
    return services


def test_every_listener_asks_the_milter_unless_switched_off_and_a_down_milter_defers(host):
    variables = host.ansible.get_variables()
    milter = variables.get("submission_mta_header_from_milter", "unix:from-check/milter.sock")
    assert host.check_output("postconf -h smtpd_milters") == milter
    assert host.check_output("postconf -h milter_default_action") == "tempfail"
    # Local mail (sendmail's) goes to the milter's second socket (test_validation_service).
    local = variables.get("submission_mta_local_milter", "unix:from-check/local.sock")
    assert host.check_output("postconf -h non_smtpd_milters") == local
    overrides = host.check_output("postconf -P").splitlines()
    switched_off = {match[1] for line in overrides if (match := SWITCHED_OFF.match(line))}
    assert switched_off == switched_off_services(variables["submission_common_listeners"])
