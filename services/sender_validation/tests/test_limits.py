"""The abuse limits, against the attacker and against the honest user."""

from sender_validation.limits import DAY, HOUR, Limits, refusal

ALICE, BOB = "alice@runbox.com", "bob@hosted.example"
LIMITS = Limits()


def mail(store, sender, login, now):
    """What the service does when the limits allow a mail."""
    assert refusal(store, sender, login, now, LIMITS) is None, (sender, login, now)
    store.request(sender, login, "192.0.2.1", now, DAY)
    store.log_request(sender, login, now)


def test_a_login_gets_three_mails_an_hour_and_ten_a_day(store):
    now = 10 * DAY
    for i in range(3):
        mail(store, f"a{i}@gmail.example", ALICE, now + i)
    assert "in the last hour" in refusal(store, "a3@gmail.example", ALICE, now + 10, LIMITS)
    # Another user behind the same address is not held back.
    assert refusal(store, "b0@gmail.example", BOB, now + 10, LIMITS) is None
    for i in range(3, 10):
        store.remove(f"a{i - 3}@gmail.example", ALICE)  # keep under the pending limit
        mail(store, f"a{i}@gmail.example", ALICE, now + (i // 3) * HOUR + i)
    assert "in the last day" in refusal(store, "a10@gmail.example", ALICE, now + 4 * HOUR, LIMITS)
    assert refusal(store, "a10@gmail.example", ALICE, now + DAY + 5 * HOUR, LIMITS) is None


def test_one_address_gets_one_mail_in_ten_minutes_and_three_a_day_from_all_logins(store):
    now, target = 10 * DAY, "victim@gmail.example"
    mail(store, target, ALICE, now)
    assert "mailed in the last" in refusal(store, target, BOB, now + 599, LIMITS)
    mail(store, target, BOB, now + 600)
    mail(store, target, "carol@runbox.com", now + 1200)
    assert "3 mails in the last day" in refusal(store, target, "dave@runbox.com", now + 1800, LIMITS)
    assert refusal(store, "other@gmail.example", "dave@runbox.com", now + 1800, LIMITS) is None


def test_at_most_five_pending_per_login(store):
    limits = Limits(login_per_hour=100, login_per_day=100)
    now = 10 * DAY
    for i in range(5):
        store.request(f"p{i}@gmail.example", ALICE, "192.0.2.1", now, DAY)
    assert "5 requests pending" in refusal(store, "p5@gmail.example", ALICE, now, limits)
    assert refusal(store, "p5@gmail.example", ALICE, now + DAY, limits) is None, "expired requests do not count"


def test_not_me_blocks_that_login_for_that_address_only(store):
    token = store.request("x@gmail.example", ALICE, "192.0.2.1", 1000, DAY)
    store.refuse(token, 1100, 30 * DAY)
    assert "not me" in refusal(store, "x@gmail.example", ALICE, 2000, LIMITS)
    assert refusal(store, "x@gmail.example", BOB, 2000, LIMITS) is None
    assert refusal(store, "y@gmail.example", ALICE, 2000, LIMITS) is None


def test_variants_of_one_mailbox_count_against_it_together(store):
    now = 10 * DAY
    mail(store, "victim@gmail.com", ALICE, now)
    for variant in ("victim+1@gmail.com", "v.ictim@gmail.com", "v.i.ctim+x@googlemail.com"):
        assert "mailed in the last" in refusal(store, variant, BOB, now + 1, LIMITS), variant
    mail(store, "v.ictim+2@gmail.com", BOB, now + 600)
    mail(store, "victim+3@googlemail.com", "carol@runbox.com", now + 1200)
    assert "3 mails in the last day" in refusal(store, "vic.tim@gmail.com", "dave@runbox.com", now + 1800, LIMITS)
    # Dots matter at a domain that does not fold them.
    mail(store, "v.ictim@example.org", "dave@runbox.com", now + 1800)
    assert refusal(store, "victim@example.org", "dave@runbox.com", now + 1801, LIMITS) is None


def test_not_me_blocks_every_variant_of_the_mailbox(store):
    token = store.request("victim@gmail.com", ALICE, "192.0.2.1", 1000, DAY)
    store.refuse(token, 1100, 30 * DAY)
    for variant in ("victim+1@gmail.com", "v.ictim@gmail.com", "victim@googlemail.com"):
        assert "not me" in refusal(store, variant, ALICE, 2000, LIMITS), variant
    assert refusal(store, "victim+1@gmail.com", BOB, 2000, LIMITS) is None
