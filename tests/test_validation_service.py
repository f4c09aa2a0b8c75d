"""The confirmation-link service as deployed: a user validates an external address
over HTTPS, and Postfix honours it at the next MAIL FROM.

Everything runs on the host under test: the HTTPS client (tests/web_client.py,
certificates verified by the host's trust store), the SMTP probe, and the
test sink's Maildir where the confirmation message arrives.
"""

import concurrent.futures
import email
import json
import re
import secrets
import shlex
import time
import uuid

import pytest
from host_probe import host_program, wait_for_sink
from smtp_load import unseen_loopback_address
from validation_flow import confirmation_link, new_address, rcpt_code

# One parameterized statement on the store, as its owner (files SQLite creates
# beside it, -wal and -shm, stay the service's): STORE_SQL STORE SQL PARAMETER...
STORE_SQL = "runuser -u sender-validation -- python3 -c " + shlex.quote(
    "import sqlite3, sys; db = sqlite3.connect(sys.argv[1]); db.execute(sys.argv[2], sys.argv[3:]); db.commit()"
)
WEB_CLIENT_B64 = host_program("web_client", "secret_refs")
WEB_REQUESTS_B64 = host_program("web_requests")


def web_requests(host, url, count, method="GET", body_bytes=0):
    """{statuses, server} of count requests from a new client address (tests/web_requests.py)."""
    run = host.run(
        'python3 -c "$(echo %s | base64 -d)" %s %s %s %s %s',
        WEB_REQUESTS_B64,
        unseen_loopback_address(),
        str(count),
        method,
        url,
        str(body_bytes),
    )
    assert run.rc == 0, f"web_requests failed: {run.stderr}"
    return json.loads(run.stdout)


@pytest.fixture(scope="module")
def web(host, deployment, host_secrets):
    variables = host.ansible.get_variables()
    if not variables.get("submission_validation_enabled", True):
        pytest.skip("submission_validation_enabled is false: this deployment has no validation service")
    name = variables.get("submission_common_validation_hostname", f"senders.{deployment.domain}")
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


def test_an_address_whose_domain_refuses_foreign_mail_is_added_with_a_warning(web, deployment):
    """The test DNS (molecule/default/local_dns.yml) publishes DMARC p=reject for
    dmarc-reject.example. One request, from the account no other test asks mail
    for (the limits allow a login three confirmation mails an hour); an address
    without a strict policy gets no warning (tests/test_validation_service's
    other adds, and the service's unit tests)."""
    account = deployment.accounts[-1]
    browser = web.session()
    browser.log_in(account)
    strict = browser.post_form("/", "/senders/add", address=f"web-{uuid.uuid4().hex[:12]}@dmarc-reject.example")
    assert strict["status"] == 200 and "confirmation link is on its way" in strict["body"], strict
    assert "DMARC p=reject" in strict["body"] and "will be refused by many receivers" in strict["body"], strict


def test_a_user_validates_an_address_by_link_and_postfix_honours_it(web, host, probe, deployment, sink):
    account = deployment.account(deployment.domain)
    sender = new_address()
    assert rcpt_code(probe, deployment, account, sender)[0] == 553, "an unvalidated address must be refused first"
    browser = web.session()
    browser.log_in(account)
    added = browser.post_form("/", "/senders/add", address=sender)
    assert added["status"] == 200 and "confirmation link is on its way" in added["body"], added
    assert "DMARC" not in added["body"], "gmail.example publishes no DMARC policy: no warning"
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
    store = host.ansible.get_variables().get(
        "submission_common_validation_store", "/var/lib/sender-validation/senders.sqlite"
    )
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
    # The service says which requests get a mail (an earlier test may have used
    # one of the login's three); they go out in order, so once the last of them
    # has arrived, any mail to the fourth would have been sent before it.
    said = host.run(
        "for i in $(seq 40); do journalctl --no-pager -o cat -u sender-validation --since=-15min | grep -F %s"
        " && exit 0; sleep 0.5; done; exit 1",
        f": no confirmation mail to {senders[-1]} for {account.address}",
    )
    assert said.rc == 0, "the service did not log that the fourth request got no mail"
    log = host.check_output("journalctl --no-pager -o cat -u sender-validation --since=-15min")
    sent = [sender for sender in senders if f": confirmation mail to {sender} for" in log]
    assert sent and sent[0] == senders[0] and senders[-1] not in sent, f"mails logged for four requests: {sent}"
    for sender in sent:
        confirmation_link(host, sink, sender, web.base_url)
    mailed = [bool(host.run("grep -rlF -- %s %s", f"To: {sender}", sink).stdout.strip()) for sender in senders]
    assert mailed == [sender in sent for sender in senders], f"which of four requests in a row got a mail: {mailed}"


def test_nginx_reads_no_secret_of_the_service_and_reaches_it_through_its_socket(web, host):
    """nginx's user is in the socket's group only: code running as it (an nginx
    bug, a webmail on the host) cannot read the session signing key, the
    configuration or the store, and the service still answers through nginx."""
    variables = host.ansible.get_variables()
    store = variables.get("submission_common_validation_store", "/var/lib/sender-validation/senders.sqlite")
    secrets = ["/etc/sender-validation/secret_key", "/etc/sender-validation/config.json"]
    # In fleet mode the store is the database's, and the service has a passfile.
    secrets += [path for path in (store, "/etc/sender-validation/pgpass") if host.file(path).exists]
    for path in secrets:
        read = host.run("runuser -u www-data -- cat %s", path)
        assert read.rc != 0 and not read.stdout, f"www-data read {path}"
        assert host.run("cat %s", path).rc == 0, f"{path} is not there to protect"
    page = web.session().call("GET", "/login")
    assert page["status"] == 200 and 'name="password"' in page["body"], page


def test_the_service_sends_mail_as_its_own_address_only(host, deployment, sink):
    """The validation service's user may give sendmail its no-reply address,
    never a user's, and its mail may show no other From: a takeover of the
    service cannot send as the users, in the envelope or in the header."""
    variables = host.ansible.get_variables()
    no_reply = variables.get("submission_common_no_reply", f"no-reply@{deployment.domain}")
    user = deployment.accounts[0].address
    sendmail = "printf %%s %s | runuser -u sender-validation -- /usr/sbin/sendmail -i -f %s -- %s"

    def message(author, token):
        return f"From: {author}\nTo: {deployment.recipient}\nSubject: sender check {token}\n\nA test.\n"

    as_user = host.run(sendmail, message(user, "envelope"), user, deployment.recipient)
    assert as_user.rc != 0 and "not authorized" in as_user.stderr, f"sent as a user: {as_user.rc} {as_user.stderr}"
    showing, itself = uuid.uuid4().hex, uuid.uuid4().hex
    local, domain = user.split("@")
    shown = f"{local}+{showing}@{domain}"
    assert host.run(sendmail, message(f"Alice <{shown}>", showing), no_reply, deployment.recipient).rc == 0
    as_itself = host.run(sendmail, message(f"Runbox <{no_reply}>", itself), no_reply, deployment.recipient)
    assert as_itself.rc == 0, f"the service could not send as {no_reply}: {as_itself.stderr}"
    arrived = wait_for_sink(host, sink, itself)
    assert arrived is not None and no_reply in arrived["From"], "the service's own mail did not arrive"
    refused = host.run(
        "for i in $(seq 40); do journalctl --no-pager -o cat --since=-15min | grep -F %s | grep -F milter-reject"
        " && exit 0; sleep 0.5; done; exit 1",
        f"<{shown}> is not one that {no_reply} may show",
    )
    assert refused.rc == 0, f"the service's mail showing {shown} was not refused by the From check"
    # Postfix bounces a refused local message to its sender: the bounce quotes
    # it, and is the only mail in the sink that may hold its token.
    for path in host.run("grep -rlF %s %s/new", showing, sink).stdout.split():
        arrived = email.message_from_string(host.file(path).content_string)
        assert shown not in arrived["From"], f"the mail showing a user's From arrived: {arrived['From']}"


def test_logins_waiting_on_dovecots_penalty_do_not_hold_the_service(web, deployment):
    """Three clients whose wrong passwords Dovecot answers slowly (its failure
    penalty, seconds each) hold one thread each, not the service: a right
    password from another address gets in within 5 s meanwhile."""
    attackers = [web.session(source=unseen_loopback_address()) for _ in range(3)]

    def fail(session):
        return session.post_form(
            "/login", "/login", login="nobody-here", password=f"wrong-{uuid.uuid4().hex}", next=""
        )["status"]

    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        # A first failure each, so that the next ones meet the penalty.
        assert list(pool.map(fail, attackers)) == [401] * 3
        slow = [pool.submit(fail, session) for session in attackers]
        time.sleep(0.5)  # the three are on their way: Dovecot's delay is seconds
        start = time.monotonic()
        web.session(source=unseen_loopback_address()).log_in(deployment.accounts[0])
        took = time.monotonic() - start
        assert [future.result() for future in slow] == [401] * 3
    assert took < 5, f"a right password took {took:.1f} s while three wrong ones waited on Dovecot"


def test_nginx_answers_429_past_the_login_and_api_bursts_of_one_address(web, host):
    """A burst of login POSTs (its GETs do not count) and API calls from one
    address is served, as many users behind one NAT would make; past it, 429."""
    variables = host.ansible.get_variables()
    login_burst = int(variables.get("submission_validation_login_burst", 30))
    api_burst = int(variables.get("submission_validation_api_burst", 50))
    pages = web_requests(host, web.base_url + "/login", login_burst + 10)["statuses"]
    assert 429 not in pages, f"the login page's GETs were limited: {pages}"
    # Sent faster than the steady rate refills: past the burst some get 429
    # however slow the host (the API's 10 a second refill while they are sent).
    logins = web_requests(host, web.base_url + "/login", login_burst + 10, method="POST")["statuses"]
    assert 429 not in logins[:login_burst] and 429 in logins[login_burst:], f"login POSTs: {logins}"
    calls = web_requests(host, web.base_url + "/api/senders", 2 * api_burst + 40)["statuses"]
    assert 429 not in calls[:api_burst] and 429 in calls[api_burst:], f"API calls: {calls}"


def tls_handshake(host, web, *options):
    name = web.base_url.removeprefix("https://")
    host_name = name.split(":")[0]
    connect = name if ":" in name else f"{name}:443"
    args = ["-connect", connect, "-servername", host_name, *options]
    return host.run("echo | openssl s_client " + " ".join(["%s"] * len(args)), *args)


def test_nginx_offers_forward_secret_aead_suites_only_and_no_tickets_or_version(web, host):
    # CBC suites, and static RSA key exchange (no forward secrecy).
    not_offered = [
        "ECDHE-ECDSA-AES128-SHA",
        "ECDHE-ECDSA-AES256-SHA",
        "ECDHE-ECDSA-AES128-SHA256",
        "ECDHE-ECDSA-AES256-SHA384",
        "ECDHE-RSA-AES128-SHA",
        "ECDHE-RSA-AES256-SHA",
        "ECDHE-RSA-AES128-SHA256",
        "ECDHE-RSA-AES256-SHA384",
        "AES128-SHA",
        "AES256-SHA",
        "AES128-GCM-SHA256",
    ]
    refused = tls_handshake(host, web, "-tls1_2", "-cipher", ":".join(not_offered))
    assert refused.rc != 0 and "-----BEGIN CERTIFICATE-----" not in refused.stdout, (
        f"a CBC or static-RSA suite was accepted: {refused.stdout[-800:]}"
    )
    aead = tls_handshake(host, web, "-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256")
    assert aead.rc == 0 and re.search(r"Cipher is ECDHE-(ECDSA|RSA)-AES128-GCM-SHA256", aead.stdout), aead.stdout
    assert "TLS session ticket:" not in aead.stdout, "nginx issues TLS session tickets"
    server = web_requests(host, web.base_url + "/login", 1)["server"]
    assert server == "nginx", f"the Server header tells the version: {server}"


def test_no_confirmation_token_reaches_nginxs_logs(web, host):
    """nginx logs errors with their request line: an oversized request (413) to
    a confirmation link, and to the login page with the link in next=, leave
    no token in its logs."""
    token = secrets.token_urlsafe(32)
    for path in (f"/confirm/{token}", f"/login?next=/confirm/{token}"):
        answers = web_requests(host, web.base_url + path, 1, method="POST", body_bytes=20000)["statuses"]
        assert answers == [413], f"POST {path} with 20 kB: {answers}"
    logs = host.run("journalctl --no-pager -u nginx; cat /var/log/nginx/*.log 2>/dev/null")
    assert token not in logs.stdout, "a confirmation token reached nginx's logs"


def served_serial(host, web, key_type):
    handshake = tls_handshake(host, web, "-sigalgs", "ECDSA+SHA256" if key_type == "ecdsa" else "RSA+SHA256")
    found = re.search(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", handshake.stdout, re.S)
    assert found, f"no certificate served: {handshake.stderr[-400:]}"
    return host.check_output("echo %s | openssl x509 -noout -serial", found.group(0))


def wait_for_serial(host, web, key_type, serial, timeout=10):
    deadline = time.monotonic() + timeout
    while (served := served_serial(host, web, key_type)) != serial and time.monotonic() < deadline:
        time.sleep(0.2)
    return served


def test_nginx_serves_a_renewed_certificate(web, host):
    """A chain replaced as the certbot deploy hook and the TLS role replace it
    (submission-tls-install-chain, then submission-tls-reload-nginx) is what
    nginx serves next: a new certificate from the local CA, then the old again."""
    variables = host.ansible.get_variables()
    if variables.get("submission_tls_source", "local_ca") != "local_ca":
        pytest.skip("only the local CA can issue a certificate on the host")
    name = web.base_url.removeprefix("https://").split(":")[0]
    key_type = variables.get("submission_validation_key_type", "ecdsa")
    tls_dir = variables.get("submission_common_tls_dir", "/etc/ssl/submission")
    stem = f"{name}.{key_type}"
    chain, key, cert = f"{tls_dir}/chains/{stem}.pem", f"{tls_dir}/private/{stem}.key", f"{tls_dir}/certs/{stem}.crt"
    original = host.check_output("openssl x509 -noout -serial -in %s", cert)
    assert served_serial(host, web, key_type) == original
    work = host.check_output("mktemp -d /tmp/renewal.XXXXXX")
    install = "/usr/local/sbin/submission-tls-install-chain %s %s %s && /usr/local/sbin/submission-tls-reload-nginx"
    try:
        host.check_output(
            "printf 'subjectAltName=DNS:%%s\\nextendedKeyUsage=serverAuth\\n' %s > %s/ext && "
            "openssl req -new -key %s -subj /CN=%s | openssl x509 -req -CA %s/ca.crt -CAkey %s/private/ca.key "
            "-set_serial 0x$(openssl rand -hex 16) -days 397 -extfile %s/ext -out %s/new.crt",
            name,
            work,
            key,
            name,
            tls_dir,
            tls_dir,
            work,
            work,
        )
        renewed = host.check_output("openssl x509 -noout -serial -in %s/new.crt", work)
        assert renewed != original
        assert host.check_output(install, chain, key, f"{work}/new.crt").endswith("reloaded nginx")
        assert wait_for_serial(host, web, key_type, renewed) == renewed, "nginx still serves the old certificate"
    finally:
        host.run(install, chain, key, cert)
        host.run("rm -rf %s", work)
    assert wait_for_serial(host, web, key_type, original) == original, "nginx does not serve the original again"


def test_a_copied_cookie_is_refused_after_logout_and_after_the_logins_sessions_end(web, host, deployment):
    """A session lives in the store: logging out ends it for every copy of its
    cookie, and sender-validation-end-sessions (which submission_sasl runs when
    a password changes or an account goes) ends every session of the login and
    no other login's."""
    account, other = deployment.accounts[0], deployment.accounts[1]
    # A client address of its own: no other test's logins count in nginx's limit.
    source = unseen_loopback_address()

    def logged_in(browser, who=account):
        page = browser.call("GET", "/")
        assert page["status"] in (200, 302), page
        return page["status"] == 200 and who.address in page["body"]

    def copy_of(browser):
        jar = f"{web.jar_dir}/{uuid.uuid4().hex}.jar"
        host.check_output("cp %s %s", browser.jar, jar)
        return WebSession(web, jar, source)

    browser = web.session(source)
    browser.log_in(account)
    stolen = copy_of(browser)
    assert logged_in(stolen), "the copied cookie did not work before logout"
    assert browser.post_form("/", "/logout")["status"] == 302
    assert not logged_in(stolen), "a cookie copied before logout still works after it"

    first, second, bystander = web.session(source), web.session(source), web.session(source)
    first.log_in(account)
    second.log_in(account)
    bystander.log_in(other)
    stolen = copy_of(first)
    assert logged_in(stolen) and logged_in(bystander, other), "the sessions did not work before they ended"
    ended = host.run("/usr/local/sbin/sender-validation-end-sessions %s", account.address)
    # Two of this test's, and any that other tests left open for the login.
    count = re.fullmatch(rf"{re.escape(account.address)}: (\d+) web session\(s\) ended\n", ended.stdout)
    assert ended.rc == 0 and count and int(count[1]) >= 2, ended
    for each in (first, second, stolen):
        assert not logged_in(each), "a session of the login outlived end-sessions"
    assert logged_in(bystander, other), "another login's session ended with it"
