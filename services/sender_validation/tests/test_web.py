"""The pages and the API through Flask's test client, with logins checked by a
real Dovecot (tests/conftest.py) and the mail captured."""

import http.client
import logging
import re
import threading
import time
import urllib.parse

import pytest
import werkzeug.serving
from sender_validation.confirmation_mail import MailSettings
from sender_validation.dmarc import DmarcSettings
from sender_validation.dovecot_auth import DovecotAuth
from sender_validation.service import SenderService, Settings
from sender_validation.web import create_app

ALICE, ALICE_PW, BOB_PW = "alice@runbox.com", "alice-Test-pw1", "bob-Test-pw2"
LISTENERS = [
    {"hostname": "smtp.runbox.com", "ports": [25, 26, 587], "tls": "starttls"},
    {"hostname": "secure.runbox.com", "ports": [25, 26, 587], "implicit_tls_ports": [465], "tls": "required"},
]
# The tests that are not about DMARC ask no DNS.
NO_DMARC = DmarcSettings(check=False)
CONFIG = {
    "secret_key": "k" * 32,
    "primary_domain": "runbox.com",
    "listeners": LISTENERS,
    "cookie_secure": False,
    "service_name": "Runbox",
}


@pytest.fixture
def web(store, dovecot_socket, dmarc_dns):
    sent = []
    settings = Settings(
        base_url="https://senders.runbox.com",
        hosted_domains=frozenset({"runbox.com", "hosted.example"}),
        mail=MailSettings(no_reply="no-reply@runbox.com", service_name="Runbox", valid_hours=24),
        dmarc=dmarc_dns,
    )
    service = SenderService(store, settings, mailer=lambda message, envelope, recipient: sent.append(message))
    app = create_app(service, DovecotAuth(dovecot_socket), CONFIG)
    return app, sent


def drain(app):
    """Wait until the outbox has handed over every mail asked for so far."""
    assert app.extensions["sender_validation"].service.outbox.drain(timeout=10), "the outbox is stuck"


def csrf(page):
    return re.search(rb'name="csrf" value="([^"]+)"', page.data).group(1).decode()


def log_in(client, login, password, next_page=""):
    page = client.get("/login")
    return client.post("/login", data={"login": login, "password": password, "next": next_page, "csrf": csrf(page)})


def link_path(message):
    return re.search(r"https://senders\.runbox\.com(/confirm/\S+)", message.get_content()).group(1)


def add(client, address):
    page = client.get("/")
    answer = client.post("/senders/add", data={"address": address, "csrf": csrf(page)})
    drain(client.application)
    return answer


def alice_asks(app, sent, address="alice.new@gmail.example"):
    """alice, logged in, asks for address; her client and the link's path."""
    alice = app.test_client()
    log_in(alice, "alice", ALICE_PW)
    add(alice, address)
    return alice, link_path(sent[-1])


def confirm(client, path):
    """Open the link and press Confirm, as a browser in that session would."""
    page = client.get(path)
    return client.post(path, data={"action": "confirm", "csrf": csrf(page)})


def validated(client):
    return client.get("/").data.split(b'id="validated"')[1].split(b'id="pending"')[0]


def test_alice_adds_an_address_and_confirms_it_from_the_link(web):
    app, sent = web
    client = app.test_client()
    assert log_in(client, "alice", ALICE_PW).status_code == 302
    answer = add(client, "alice.new@gmail.example")
    assert answer.status_code == 200 and b"confirmation link is on its way" in answer.data
    page = client.get(link_path(sent[0]))
    assert b"alice@runbox.com" in page.data and b"alice.new@gmail.example" in page.data
    assert b"alice.new@gmail.example" in client.get("/").data.split(b'id="pending"')[1]
    done = client.post(link_path(sent[0]), data={"action": "confirm", "csrf": csrf(page)})
    assert done.status_code == 200 and b"may now send as alice.new@gmail.example" in done.data
    assert b"alice.new@gmail.example" in validated(client)


def test_a_scanner_without_a_session_opens_and_submits_the_link_and_validates_nothing(web):
    app, sent = web
    alice, path = alice_asks(app, sent)
    scanner = app.test_client()
    assert scanner.get(path).status_code == 200
    assert confirm(scanner, path).status_code == 403
    assert b"alice.new@gmail.example" not in validated(alice)


def pending(client):
    return client.get("/").data.split(b'id="pending"')[1]


def test_a_scanner_that_presses_not_me_cancels_nothing_and_the_owner_still_confirms(web):
    app, sent = web
    alice, path = alice_asks(app, sent)
    scanner = app.test_client()
    page = scanner.get(path)
    for typed in ("", "someone@else.example"):
        pressed = scanner.post(path, data={"action": "not-me", "address": typed, "csrf": csrf(page)})
        assert pressed.status_code == 400 and b"Type the address" in pressed.data
    assert b"alice.new@gmail.example" in pending(alice)
    assert confirm(alice, path).status_code == 200
    assert b"alice.new@gmail.example" in validated(alice)


def test_not_me_with_the_address_typed_cancels_and_blocks_the_login(web):
    app, sent = web
    alice, path = alice_asks(app, sent)
    owner = app.test_client()
    page = owner.get(path)
    pressed = owner.post(path, data={"action": "not-me", "address": "Alice.New@gmail.example", "csrf": csrf(page)})
    assert pressed.status_code == 200
    assert b"alice.new@gmail.example" not in pending(alice)
    mails = len(sent)
    add(alice, "alice.new@gmail.example")
    assert len(sent) == mails, "a blocked login got another confirmation mail sent"


def test_bob_cannot_confirm_alices_request(web):
    app, sent = web
    alice, path = alice_asks(app, sent)
    bob = app.test_client()
    log_in(bob, "bob%hosted.example", BOB_PW)
    assert confirm(bob, path).status_code == 403
    # The link still works for alice.
    assert confirm(alice, path).status_code == 200
    assert b"alice.new@gmail.example" in validated(alice)


def test_a_post_without_its_csrf_token_is_refused(web):
    app, sent = web
    client = app.test_client()
    log_in(client, "alice", ALICE_PW)
    assert client.post("/senders/add", data={"address": "x@gmail.example"}).status_code == 400
    assert client.post("/senders/add", data={"address": "x@gmail.example", "csrf": "forged"}).status_code == 400
    drain(app)
    assert sent == []
    assert add(client, "x@gmail.example").status_code == 200 and len(sent) == 1


@pytest.mark.parametrize("case", ["altered", "reused"])
def test_a_bad_link_gets_a_clear_page_and_changes_nothing(web, case):
    app, sent = web
    client = app.test_client()
    log_in(client, "alice", ALICE_PW)
    add(client, "alice.new@gmail.example")
    path = link_path(sent[0])
    if case == "altered":
        path = path[:-2] + ("xx" if not path.endswith("xx") else "yy")
    else:
        page = client.get(path)
        client.post(path, data={"action": "confirm", "csrf": csrf(page)})
    page = client.get(path)
    assert page.status_code == 404 and b"This link does not work" in page.data
    answer = client.post(path, data={"action": "confirm", "csrf": csrf(client.get("/"))})
    assert answer.status_code == 404


def test_a_wrong_password_is_refused_and_a_login_page_comes_back(web):
    app, _ = web
    client = app.test_client()
    answer = log_in(client, "alice", "wrong")
    assert answer.status_code == 401 and b"Wrong login or password" in answer.data
    assert client.get("/").status_code == 302


@pytest.mark.parametrize(
    "next_page",
    [
        "//evil.example/x",
        "/\\evil.example/x",
        "/\\/evil.example",
        "\\\\evil.example",
        "/%5Cevil.example/x",
        "/%2F%2Fevil.example",
        "https://evil.example/",
        "http:evil.example",
        "javascript:alert(1)",
        "/\t/evil.example",
        "evil.example",
    ],
)
def test_the_login_page_never_redirects_off_site(web, next_page):
    app, _ = web
    answer = log_in(app.test_client(), "alice", ALICE_PW, next_page=next_page)
    assert answer.status_code == 302 and answer.headers["Location"] in ("/", "http://localhost/"), answer.headers


def test_the_login_page_returns_to_a_page_of_this_site(web):
    app, _ = web
    answer = log_in(app.test_client(), "alice", ALICE_PW, next_page="/smtp-settings")
    assert answer.headers["Location"].endswith("/smtp-settings")


def test_smtp_settings_show_the_username_each_account_needs(web):
    app, _ = web
    alice, bob = app.test_client(), app.test_client()
    log_in(alice, "alice", ALICE_PW)
    log_in(bob, "bob%hosted.example", BOB_PW)
    alice_page, bob_page = alice.get("/smtp-settings").data, bob.get("/smtp-settings").data
    assert b'class="username">alice<' in alice_page
    assert b'class="username">bob%hosted.example<' in bob_page
    assert b"smtp.runbox.com" in alice_page and b"secure.runbox.com" in alice_page
    assert b"STARTTLS (required)" in alice_page and b"SSL/TLS on 465" in alice_page


def test_the_api_lists_adds_and_removes_with_basic_auth(web):
    app, sent = web
    client = app.test_client()
    assert client.get("/api/senders").status_code == 401
    assert client.get("/api/senders", auth=("alice", "wrong")).status_code == 401
    added = client.post("/api/senders", json={"address": "Api@Gmail.Example"}, auth=("alice", ALICE_PW))
    drain(app)
    assert added.status_code == 202 and added.json["pending"] == ["api@gmail.example"]
    assert len(sent) == 1 and "Set-Cookie" not in added.headers
    listed = client.get("/api/senders", auth=("alice", ALICE_PW)).json
    assert listed == {"login": ALICE, "validated": [], "pending": ["api@gmail.example"], "provided": []}
    assert client.post("/api/senders", json={"address": "x@runbox.com"}, auth=("alice", ALICE_PW)).status_code == 400
    assert client.delete("/api/senders/api@gmail.example", auth=("alice", ALICE_PW)).status_code == 204
    assert client.delete("/api/senders/api@gmail.example", auth=("alice", ALICE_PW)).status_code == 404


def test_pages_keep_the_token_out_of_referers(web):
    app, _ = web
    headers = app.test_client().get("/login").headers
    assert headers["Referrer-Policy"] == "no-referrer"
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]


def test_an_address_the_provider_set_is_listed_and_cannot_be_removed(web, store):
    app, _ = web
    with store.transaction():
        store.db.execute(
            "INSERT INTO validated_senders VALUES ('alice.ext@gmail.example', ?, 'inventory', 1)", (ALICE,)
        )
    alice = app.test_client()
    log_in(alice, "alice", ALICE_PW)
    listed = validated(alice)
    assert b"alice.ext@gmail.example" in listed and b"set up by Runbox" in listed and b"Remove" not in listed
    page = alice.get("/")
    alice.post("/senders/remove", data={"address": "alice.ext@gmail.example", "csrf": csrf(page)})
    assert b"alice.ext@gmail.example" in validated(alice)
    assert store.senders(ALICE, now=2) == (["alice.ext@gmail.example"], [])


def test_a_cookie_copied_before_logout_is_refused_after_it(web):
    app, _ = web
    alice = app.test_client()
    log_in(alice, "alice", ALICE_PW)
    if hasattr(alice, "get_cookie"):  # werkzeug 2.3 and later
        cookie = alice.get_cookie("session").value
    else:
        cookie = next(c.value for c in alice.cookie_jar if c.name == "session")
    copy = app.test_client(use_cookies=False)
    headers = {"Cookie": f"session={cookie}"}
    assert copy.get("/", headers=headers).status_code == 200, "the copy works while the session lasts"
    alice.post("/logout", data={"csrf": csrf(alice.get("/"))})
    assert alice.get("/").status_code == 302
    assert copy.get("/", headers=headers).status_code == 302, "a copied cookie outlived the logout"
    assert copy.get("/smtp-settings", headers=headers).status_code == 302


def test_end_sessions_logs_a_login_out_of_every_browser(web):
    app, _ = web
    service = app.extensions["sender_validation"].service
    alice, alice_elsewhere, bob = app.test_client(), app.test_client(), app.test_client()
    log_in(alice, "alice", ALICE_PW)
    log_in(alice_elsewhere, "alice@runbox.com", ALICE_PW)
    log_in(bob, "bob%hosted.example", BOB_PW)
    assert service.end_sessions(ALICE) == 2
    assert alice.get("/").status_code == 302 and alice_elsewhere.get("/").status_code == 302
    assert bob.get("/").status_code == 200


def test_a_session_ends_after_its_ttl_however_often_it_is_used(web):
    app, _ = web
    service = app.extensions["sender_validation"].service
    clock = {"now": 2_000_000_000}
    service.clock = lambda: clock["now"]
    alice = app.test_client()
    log_in(alice, "alice", ALICE_PW)
    ttl = service.settings.session_ttl
    for _ in range(3):
        clock["now"] += ttl // 4
        assert alice.get("/").status_code == 200
    clock["now"] += ttl // 4
    assert alice.get("/").status_code == 302


def test_the_answer_does_not_wait_for_sendmail(store, dovecot_socket):
    """The mail goes out after the answer: a sendmail that hangs does not hold it,
    and the answer is the same whether a mail went out or not."""
    release, sent = threading.Event(), []

    def slow_sendmail(message, envelope, recipient=None):
        release.wait(10)
        sent.append(recipient)

    settings = Settings(
        base_url="https://senders.runbox.com",
        hosted_domains=frozenset({"runbox.com"}),
        mail=MailSettings(no_reply="no-reply@runbox.com", service_name="Runbox", valid_hours=24),
        dmarc=NO_DMARC,
    )
    service = SenderService(store, settings, mailer=slow_sendmail)
    app = create_app(service, DovecotAuth(dovecot_socket), CONFIG)
    alice = app.test_client()
    log_in(alice, "alice", ALICE_PW)
    answers = []
    for _ in range(2):  # the second is held back by the limits: no mail
        page = alice.get("/")
        start = time.monotonic()
        answer = alice.post("/senders/add", data={"address": "x@gmail.example", "csrf": csrf(page)})
        answers.append((answer.status_code, answer.data.split(b'id="validated"')[0], time.monotonic() - start))
    assert all(took < 2 for _, _, took in answers), answers
    assert answers[0][:2] == answers[1][:2], "the answer tells whether a mail went out"
    assert sent == []
    release.set()
    assert service.outbox.drain(timeout=10)
    assert sent == ["x@gmail.example"]


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ("x\r\nBcc: victim@evil.example@gmail.example", "control character"),
        ("x@gmail.example\n", "control character"),
        ("=?utf-8?q?attacker=40evil.example?=@gmail.com", "encoded word"),
        ("=?utf-8?q?a=0D=0Ab?=@gmail.com", "encoded word"),
    ],
)
def test_a_bad_address_gets_a_400_naming_the_problem_and_stores_and_mails_nothing(web, store, address, problem):
    app, sent = web
    alice = app.test_client()
    log_in(alice, "alice", ALICE_PW)
    answer = alice.post("/senders/add", data={"address": address, "csrf": csrf(alice.get("/"))})
    assert answer.status_code == 400 and problem.encode() in answer.data, answer.data
    assert sent == [] and store.senders(ALICE, now=2) == ([], [])
    assert store.db.execute("SELECT COUNT(*) FROM request_log").fetchone()[0] == 0
    api = app.test_client().post("/api/senders", json={"address": address}, auth=("alice", ALICE_PW))
    assert api.status_code == 400 and problem in api.json["error"]


def test_confirmation_tokens_never_reach_a_log(web, caplog):
    app, _ = web
    token = "q7Xr-secret_token_0123456789abcdefghijklmnopq"  # noqa: S105 (a made-up token)
    path = f"/confirm/{token}"
    service = app.extensions["sender_validation"].service

    def broken(_token):
        raise RuntimeError("the store is down")

    caplog.set_level(logging.DEBUG)
    # An access log line as gunicorn writes it, and werkzeug's.
    logging.getLogger("gunicorn.access").info(
        '%(h)s "%(r)s" %(s)s', {"h": "192.0.2.1", "r": f"GET {path} HTTP/1.1", "s": "200"}
    )
    logging.getLogger("werkzeug").info('"%s %s %s" %s', "POST", path, "HTTP/1.1", 200)
    service.open_request = broken
    app.testing = False  # as deployed: Flask logs the exception, with the path
    assert app.test_client().get(path).status_code == 500
    try:
        raise ValueError(f"bad token in {path}")
    except ValueError:
        logging.getLogger("gunicorn.error").exception("Error handling request")
    assert caplog.records, "nothing was logged"
    text = caplog.text + "".join(record.getMessage() + (record.exc_text or "") for record in caplog.records)
    assert "Exception on /confirm/[token]" in text
    assert token not in text


def http_log_in(port, login, password, client_ip):
    """Log in over HTTP as a browser behind nginx would (X-Forwarded-For), then open
    the senders page; (the login's status, the page's status, the page)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("GET", "/login", headers={"X-Forwarded-For": client_ip})
    page = connection.getresponse()
    cookie = page.getheader("Set-Cookie").split(";", 1)[0]
    token = re.search(rb'name="csrf" value="([^"]+)"', page.read()).group(1).decode()
    body = urllib.parse.urlencode({"login": login, "password": password, "csrf": token, "next": ""})
    headers = {"Cookie": cookie, "X-Forwarded-For": client_ip, "Content-Type": "application/x-www-form-urlencoded"}
    connection.request("POST", "/login", body=body, headers=headers)
    answer = connection.getresponse()
    answer.read()
    if answer.status != 302:
        return answer.status, None, b""
    headers["Cookie"] = answer.getheader("Set-Cookie").split(";", 1)[0]
    connection.request("GET", "/", headers=headers)
    senders = connection.getresponse()
    return answer.status, senders.status, senders.read()


def test_wrong_passwords_do_not_hold_a_right_login_in_a_threaded_server(store, slow_dovecot_socket):
    """Three wrong-password logins at once, each held by Dovecot's penalty, while
    alice logs in from another address: a threaded worker answers her at once."""
    settings = Settings(
        base_url="https://senders.runbox.com",
        hosted_domains=frozenset({"runbox.com"}),
        mail=MailSettings(no_reply="no-reply@runbox.com", service_name="Runbox", valid_hours=24),
        dmarc=NO_DMARC,
    )
    app = create_app(SenderService(store, settings), DovecotAuth(slow_dovecot_socket), CONFIG)
    server = werkzeug.serving.make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    start, results = threading.Barrier(4), {}

    def attempt(name, login, password, client_ip):
        start.wait(timeout=10)
        began = time.monotonic()
        results[name] = (*http_log_in(server.port, login, password, client_ip), began, time.monotonic())

    workers = [
        threading.Thread(target=attempt, args=(f"attacker{i}", "alice", "wrong", "198.51.100.20")) for i in range(3)
    ]
    workers.append(threading.Thread(target=attempt, args=("alice", "alice", ALICE_PW, "192.0.2.20")))
    try:
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=60)
    finally:
        server.shutdown()
    login_status, page_status, page, began, ended = results["alice"]
    assert (login_status, page_status) == (302, 200) and b"alice@runbox.com" in page, results["alice"]
    assert ended - began < 5, f"alice waited {ended - began:.1f} s"
    attackers = [results[f"attacker{i}"] for i in range(3)]
    assert all(status == 401 for status, *_ in attackers), attackers
    assert ended < min(attacker_ended for *_, attacker_ended in attackers), "alice answered while they waited"


def test_a_failed_login_logs_what_was_typed_only_in_a_logins_shape(web, caplog):
    """The journal gets the failed login's name, as Dovecot's would, but a
    password typed into the login field is not written there."""
    app, _ = web
    caplog.set_level(logging.INFO)
    typed_password = "correct horse, battery staple!"  # noqa: S105 (what a user might type)
    assert log_in(app.test_client(), typed_password, "x").status_code == 401
    assert log_in(app.test_client(), "nobody%hosted.example", "wrong").status_code == 401
    assert typed_password not in caplog.text and "(not a login)" in caplog.text
    assert "'nobody%hosted.example'" in caplog.text


def test_the_page_and_the_api_say_what_a_strict_dmarc_policy_means(web):
    app, sent = web
    client = app.test_client()
    assert log_in(client, "alice", ALICE_PW).status_code == 302
    strict = add(client, "someone@dmarc-reject.example")
    assert strict.status_code == 200 and b"DMARC p=reject" in strict.data and b"will be refused" in strict.data
    relaxed = add(client, "someone@dmarc-none.example")
    assert relaxed.status_code == 200 and b"DMARC" not in relaxed.data
    api = client.post("/api/senders", json={"address": "x@dmarc-quarantine.example"}, auth=("alice", ALICE_PW))
    drain(app)
    assert api.status_code == 202
    assert api.json["dmarc"]["policy"] == "quarantine" and api.json["dmarc"]["checked"] is True
    assert "spam folders" in api.json["dmarc"]["warning"]
    # Warned, not refused: each got its confirmation mail.
    assert len(sent) == 3
