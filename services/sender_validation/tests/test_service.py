"""The service's operations on a real store, with the mail captured (no sendmail here)."""

import contextlib
import dataclasses
import re
import threading

import pytest
from ansible_collections.mailops.submission.tests.unit.plugins.modules.dns_server import free_port as free_udp_port
from sender_validation.confirmation_mail import MailSettings
from sender_validation.dmarc import DmarcSettings, Policy
from sender_validation.service import InputError, SenderService, Settings

# Every test runs on a SqliteStore, then on a PgStore (the fleet's schema, a real server).
pytestmark = pytest.mark.parametrize("store", ["sqlite", "postgresql"], indirect=True)
ALICE, BOB = "alice@runbox.com", "bob@hosted.example"
SETTINGS = Settings(
    base_url="https://senders.runbox.com/",
    hosted_domains=frozenset({"runbox.com", "hosted.example"}),
    mail=MailSettings(no_reply="no-reply@runbox.com", service_name="Runbox", valid_hours=24),
)


ABSENT = Policy("gmail.example", "absent")


class Clock:
    def __init__(self):
        self.now = 1_000_000

    def __call__(self):
        return self.now


@pytest.fixture
def settings(dmarc_dns):
    return dataclasses.replace(SETTINGS, dmarc=dmarc_dns)


@pytest.fixture
def setup(store, settings):
    sent, clock = [], Clock()

    def capture(message, envelope, recipient):
        assert recipient == message["To"], "sendmail gets the address the message is to"
        sent.append((message, envelope))

    service = SenderService(store, settings, mailer=capture, clock=clock)
    original_add = service.add

    def add(*args):
        # Each add's mail handed over before the test looks at what was sent.
        try:
            return original_add(*args)
        finally:
            assert service.outbox.drain(timeout=10), "the outbox is stuck"

    service.add = add
    return service, sent, clock


def token_of(message):
    return re.search(r"https://senders\.runbox\.com/confirm/(\S+)", message.get_content()).group(1)


def test_adding_mails_a_link_that_validates_once_confirmed(setup):
    service, sent, _ = setup
    assert service.add(ALICE, "Alice.New@Gmail.Example", "192.0.2.7") == ("alice.new@gmail.example", ABSENT)
    ((message, envelope),) = sent
    assert (message["To"], envelope) == ("alice.new@gmail.example", "no-reply@runbox.com")
    assert message["From"] == "Runbox <no-reply@runbox.com>"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Content-Transfer-Encoding"] == "7bit"
    assert f"/confirm/{token_of(message)}\n".encode() in message.as_bytes(), "the link must be whole in the raw text"
    body = message.get_content()
    assert ALICE in body and "192.0.2.7" in body
    assert service.senders(ALICE) == ([], ["alice.new@gmail.example"])
    assert service.confirm(token_of(message), ALICE) == "alice.new@gmail.example"
    assert service.senders(ALICE) == (["alice.new@gmail.example"], [])


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("someone@runbox.com", "come with the accounts"),
        ("x@Hosted.Example", "come with the accounts"),
        ("@gmail.example", "not a whole domain"),
        ("a b@gmail.example", "whitespace"),
        ("evil%relay@gmail.example", "percent"),
    ],
)
def test_an_address_that_may_not_be_added_is_refused_and_mails_nothing(setup, raw, reason):
    service, sent, _ = setup
    with pytest.raises(InputError, match=reason):
        service.add(ALICE, raw, "192.0.2.7")
    assert sent == [] and service.senders(ALICE) == ([], [])


def test_the_answer_is_the_same_when_a_limit_holds_the_mail_back(setup):
    service, sent, _ = setup
    first = service.add(ALICE, "x@gmail.example", "192.0.2.7")
    second = service.add(BOB, "x@gmail.example", "192.0.2.8")  # one mail in ten minutes to one address
    assert first == second == ("x@gmail.example", Policy("gmail.example", "absent"))
    assert len(sent) == 1


def test_the_link_is_only_good_for_the_login_that_asked_and_only_once(setup):
    service, sent, clock = setup
    service.add(ALICE, "x@gmail.example", "192.0.2.7")
    token = token_of(sent[0][0])
    assert service.open_request(token).login == ALICE
    assert service.confirm(token, BOB) is None
    assert service.confirm(token, ALICE) == "x@gmail.example"
    assert service.confirm(token, ALICE) is None and service.open_request(token) is None
    clock.now += 24 * 3600
    service.add(ALICE, "y@gmail.example", "192.0.2.7")
    late = token_of(sent[1][0])
    clock.now += 24 * 3600
    assert service.open_request(late) is None and service.confirm(late, ALICE) is None


def test_not_me_blocks_the_login_from_asking_again(setup):
    service, sent, clock = setup
    service.add(ALICE, "x@gmail.example", "192.0.2.7")
    assert service.not_me(token_of(sent[0][0])).login == ALICE
    clock.now += 3600
    service.add(ALICE, "x@gmail.example", "192.0.2.7")
    assert len(sent) == 1 and service.senders(ALICE) == ([], [])


def test_two_requests_at_once_cannot_both_pass_a_limit_that_allows_one(store, tmp_path, settings):
    """Two workers ask for the same mailbox at the same moment: the limits' check and
    the new request are one transaction, so only one mail goes out."""
    checking = threading.Barrier(2)

    class Racing(type(store)):
        def requests_for_sender(self, sender, since):
            count = super().requests_for_sender(sender, since)
            # Both requests checked before either stored its own: the race,
            # unless the first holds the store until it has stored.
            with contextlib.suppress(threading.BrokenBarrierError):
                checking.wait(timeout=1)
            return count

    sent = []
    services = [
        SenderService(Racing(store.path), settings, mailer=lambda m, e, r: sent.append(r), clock=lambda: 1_000_000)
        for _ in range(2)
    ]
    workers = [
        threading.Thread(target=service.add, args=(login, address, "192.0.2.7"))
        for service, login, address in zip(
            services, (ALICE, BOB), ("victim+a@gmail.com", "v.ictim@gmail.com"), strict=True
        )
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=20)
    for service in services:
        assert service.outbox.drain(timeout=10)
        service.store.close()
    assert len(sent) == 1, sent


@pytest.mark.parametrize(
    ("address", "kind", "warned"),
    [
        ("a@dmarc-reject.example", "reject", "will be refused by many receivers"),
        ("a@dmarc-quarantine.example", "quarantine", "will often land in spam folders"),
        ("a@dmarc-none.example", "none", ""),
        ("a@gmail.example", "absent", ""),
        ("a@sub.parent.example", "reject", "will be refused"),
        # sp= is the subdomains' policy, not the domain's own.
        ("a@parent.example", "none", ""),
        # Several records are none (RFC 7489 6.6.3), and so is one that does not read.
        ("a@twice.example", "absent", ""),
        ("a@broken.example", "absent", ""),
    ],
)
def test_adding_says_what_the_domains_dmarc_policy_means(setup, address, kind, warned):
    service, sent, _ = setup
    added = service.add(ALICE, address, "192.0.2.7")
    assert added.dmarc.kind == kind and len(sent) == 1
    assert (warned in added.dmarc.warning) if warned else added.dmarc.warning == ""


def test_a_domain_whose_dns_does_not_answer_is_added_with_a_word(store):
    silent = DmarcSettings(timeout=1, nameservers=("127.0.0.1",), port=free_udp_port())
    service = SenderService(store, dataclasses.replace(SETTINGS, dmarc=silent), mailer=lambda *_: None)
    added = service.add(ALICE, "a@dmarc-reject.example", "192.0.2.7")
    assert added.dmarc.kind == "unknown" and "could not be checked" in added.dmarc.warning
    off = SenderService(store, dataclasses.replace(SETTINGS, dmarc=DmarcSettings(check=False)), mailer=lambda *_: None)
    assert off.add(ALICE, "b@dmarc-reject.example", "192.0.2.7").dmarc == Policy("dmarc-reject.example", "unchecked")
    assert service.outbox.drain(timeout=10)


def test_refusing_strict_domains_refuses_by_name_and_sends_nothing(store, dmarc_dns):
    sent = []
    strict = dataclasses.replace(SETTINGS, dmarc=dataclasses.replace(dmarc_dns, refuse=True))
    service = SenderService(store, strict, mailer=lambda *args: sent.append(args))
    with pytest.raises(InputError, match=r"a@dmarc-quarantine\.example: .*p=quarantine.*does not validate"):
        service.add(ALICE, "a@dmarc-quarantine.example", "192.0.2.7")
    assert service.add(ALICE, "a@dmarc-none.example", "192.0.2.7").dmarc.kind == "none"
    assert service.outbox.drain(timeout=10) and [args[2] for args in sent] == ["a@dmarc-none.example"]
    assert service.senders(ALICE)[1] == ["a@dmarc-none.example"]
