"""The confirmation-link service as deployed: a user validates an external address
over HTTPS, and Postfix honours it at the next MAIL FROM.

Everything runs on the host under test: the HTTPS client (tests/web_client.py,
certificates verified by the host's trust store), the SMTP probe, and the
test sink's Maildir where the confirmation message arrives.
"""

import json
import shlex
import time
import uuid

import pytest
from host_probe import host_program
from validation_flow import confirmation_link, new_address, rcpt_code

# One parameterized statement on the store, as its owner (files SQLite creates
# beside it, -wal and -shm, stay the service's): STORE_SQL STORE SQL PARAMETER...
STORE_SQL = "runuser -u sender-validation -- python3 -c " + shlex.quote(
    "import sqlite3, sys; db = sqlite3.connect(sys.argv[1]); db.execute(sys.argv[2], sys.argv[3:]); db.commit()"
)
WEB_CLIENT_B64 = host_program("web_client", "secret_refs")


@pytest.fixture(scope="module")
def web(host, deployment, host_secrets):
    variables = host.ansible.get_variables()
    if not variables.get("submission_validation_enabled", True):
        pytest.skip("submission_validation_enabled is false: this deployment has no validation service")
    name = variables.get("submission_validation_hostname", f"senders.{deployment.domain}")
    return Web(host, f"https://{name}", host_secrets)


class Web:
    """A browser's session on the host: one cookie jar per Web.session()."""

    def __init__(self, host, base_url, secrets):
        self.host, self.base_url, self.secrets = host, base_url, secrets
        self.jar_dir = host.check_output("mktemp -d /tmp/web-tests.XXXXXX")

    def session(self, source=None):
        """A new session; with source, its connections come from that local address."""
        return WebSession(self, f"{self.jar_dir}/{uuid.uuid4().hex}.jar", source)


class WebSession:
    def __init__(self, web, jar, source=None):
        self.web, self.jar, self.source = web, jar, source

    def call(self, method, path, form=None):
        url = path if path.startswith("https://") else self.web.base_url + path
        args = [self.jar, method, url] + ([json.dumps(self.web.secrets.conceal(form))] if form is not None else [])
        run = self.web.secrets.env + ' python3 -c "$(echo %s | base64 -d)" ' + " ".join(["%s"] * len(args))
        if self.source:
            run, args = "WEB_CLIENT_SOURCE=%s " + run, [self.source, WEB_CLIENT_B64, *args]
        else:
            args = [WEB_CLIENT_B64, *args]
        cmd = self.web.host.run(run, *args)
        assert cmd.rc == 0, f"web client failed: {cmd.stderr}"
        return json.loads(cmd.stdout)

    def post_form(self, page, path, **fields):
        """POST to path as the form on page would, with that page's CSRF token."""
        return self.call("POST", path, dict(fields, csrf=f"from:{self.web.base_url}{page}"))

    def log_in(self, account):
        answer = self.post_form("/login", "/login", login=account.login, password=account.password, next="")
        assert answer["status"] == 302, f"login as {account.login}: {answer['status']} {answer['body'][:300]}"


def test_a_user_validates_an_address_by_link_and_postfix_honours_it(web, host, probe, deployment, sink):
    account = deployment.account(deployment.domain)
    sender = new_address()
    assert rcpt_code(probe, deployment, account, sender)[0] == 553, "an unvalidated address must be refused first"
    browser = web.session()
    browser.log_in(account)
    added = browser.post_form("/", "/senders/add", address=sender)
    assert added["status"] == 200 and "confirmation link is on its way" in added["body"], added
    link = confirmation_link(host, sink, sender, web.base_url)
    page = browser.call("GET", link)
    assert page["status"] == 200 and sender in page["body"] and account.address in page["body"]
    confirmed = browser.post_form(link[len(web.base_url) :], link, action="confirm")
    confirmed_at = time.monotonic()
    assert confirmed["status"] == 200 and f"may now send as {sender}" in confirmed["body"], confirmed
    code = rcpt_code(probe, deployment, account, sender)
    print(f"from the confirming POST to the first RCPT answer: {time.monotonic() - confirmed_at:.3f} s")
    assert code[0] == 250, f"{account.login} as {sender} after confirming: {code}"
    removed = browser.post_form("/", "/senders/remove", address=sender)
    assert removed["status"] == 302, removed
    assert rcpt_code(probe, deployment, account, sender)[0] == 553, "a removed address must be refused again"
    token = link.rsplit("/", 1)[1]
    logs = host.run("journalctl --no-pager -u sender-validation -u nginx; cat /var/log/nginx/*.log 2>/dev/null")
    assert token not in logs.stdout, "a confirmation token reached the logs"


def test_opening_and_submitting_the_link_without_a_session_validates_nothing(web, host, probe, deployment, sink):
    # Another login than the flow test's: each login gets 3 confirmation mails an hour.
    account = [a for a in deployment.accounts if a.address.endswith("@" + deployment.domain)][-1]
    sender = new_address()
    owner = web.session()
    owner.log_in(account)
    owner.post_form("/", "/senders/add", address=sender)
    link = confirmation_link(host, sink, sender, web.base_url)
    scanner = web.session()
    opened = scanner.call("GET", link)
    assert opened["status"] == 200, opened
    submitted = scanner.post_form(link[len(web.base_url) :], link, action="confirm")
    assert submitted["status"] == 403, submitted
    assert rcpt_code(probe, deployment, account, sender)[0] == 553


def test_an_unreadable_store_defers_external_senders_but_not_the_accounts_own(web, host, probe, deployment, sink):
    account = deployment.account(deployment.domain)
    store = host.ansible.get_variables().get("submission_validation_store", "/var/lib/sender-validation/senders.sqlite")
    validated = new_address()
    # Seeded as the inventory's external senders are.
    insert = "INSERT INTO validated_senders VALUES (?, ?, 'inventory', 0)"
    host.check_output(STORE_SQL + " %s %s %s %s", store, insert, validated, account.address)
    try:
        assert rcpt_code(probe, deployment, account, validated)[0] == 250
        mode = host.check_output("stat -c %%a %s", store)
        # Nothing is restarted or reloaded: the map checks the store at each lookup.
        host.check_output("chmod 000 %s", store)
        try:
            during = rcpt_code(probe, deployment, account, validated)
            own = rcpt_code(probe, deployment, account, account.address)
        finally:
            host.check_output("chmod %s %s", mode, store)
        assert during[0] // 100 == 4, f"a validated sender with the store unreadable: {during}"
        assert own[0] == 250, f"the account's own address with the store unreadable: {own}"
        assert rcpt_code(probe, deployment, account, validated)[0] == 250, "readable again, the store lost nothing"
    finally:
        host.run(STORE_SQL + " %s %s %s", store, "DELETE FROM validated_senders WHERE sender = ?", validated)


def test_failed_web_logins_slow_that_client_address_and_no_other(web, deployment):
    """Dovecot's failure penalty counts the client's address, which nginx hands
    to the service. After failures from one address, a right password from it
    (a user behind the same NAT) is slowed but gets in; from another address it
    is not slowed at all."""
    account = deployment.accounts[-1]
    attacker = web.session(source="127.0.0.61")
    for attempt in range(2):
        answer = attacker.post_form("/login", "/login", login=account.login, password=f"wrong-{attempt}", next="")
        refused = answer["status"] == 401 and "Wrong login or password" in answer["body"]
        assert refused, f"a wrong password was not refused: {answer['status']} {answer['body'][:300]}"
    timings = {}
    for label, source in (("same address", "127.0.0.61"), ("other address", "127.0.0.62")):
        start = time.monotonic()
        web.session(source=source).log_in(account)
        timings[label] = time.monotonic() - start
    assert timings["same address"] >= 1.8, f"no penalty on the failing address: {timings}"
    assert timings["other address"] < 1.5, f"a login from another address was slowed: {timings}"


def hosted_account(deployment):
    return next(a for a in deployment.accounts if not a.address.endswith("@" + deployment.domain))


def test_a_link_altered_reused_unsigned_or_pressed_by_another_login_validates_nothing(
    web, host, probe, deployment, sink
):
    owner_account, other_account = hosted_account(deployment), deployment.account(deployment.domain)
    sender = new_address()
    owner = web.session()
    owner.log_in(owner_account)
    owner.post_form("/", "/senders/add", address=sender)
    link = confirmation_link(host, sink, sender, web.base_url)
    path = link[len(web.base_url) :]
    altered = owner.call("GET", link[:-4] + ("AAAA" if not link.endswith("AAAA") else "BBBB"))
    assert altered["status"] == 404 and "This link does not work" in altered["body"], altered
    other = web.session()
    other.log_in(other_account)
    assert other.post_form(path, link, action="confirm")["status"] == 403
    assert owner.call("POST", link, {"action": "confirm"})["status"] == 400, "a POST without its form token"
    assert rcpt_code(probe, deployment, owner_account, sender)[0] == 553
    assert owner.post_form(path, link, action="confirm")["status"] == 200
    assert rcpt_code(probe, deployment, owner_account, sender)[0] == 250
    reused = owner.post_form("/", link, action="confirm")
    assert reused["status"] == 404 and "This link does not work" in reused["body"], reused
    owner.post_form("/", "/senders/remove", address=sender)


def test_a_login_gets_three_mails_an_hour_and_the_answer_does_not_tell(web, host, deployment, sink):
    account = hosted_account(deployment)
    browser = web.session()
    browser.log_in(account)
    senders = [new_address() for _ in range(4)]
    answers = [browser.post_form("/", "/senders/add", address=sender) for sender in senders]
    for sender, answer in zip(senders, answers, strict=True):
        assert answer["status"] == 200 and f"If {sender} accepts mail, a confirmation link" in answer["body"]
    confirmation_link(host, sink, senders[0], web.base_url)
    # The mails that go out arrive within a second or two; give the fourth time to.
    time.sleep(5)
    mailed = [bool(host.run("grep -rlF -- %s %s", f"To: {sender}", sink).stdout.strip()) for sender in senders]
    assert mailed[0] and not mailed[-1], f"which of four requests in a row got a mail: {mailed}"
