import pytest
from ansible_collections.mailops.submission.plugins.module_utils.login_limits import LimitError, postfwd_rules

DEFAULTS = {"messages_per_hour": 200, "messages_per_day": 1000, "recipients_per_hour": 500, "recipients_per_day": 2000}


def rule(rules, rule_id):
    return next(r for r in rules if r.startswith(f"id={rule_id};"))


def test_every_login_gets_message_and_recipient_limits_an_hour_and_a_day():
    rules = postfwd_rules(DEFAULTS)
    assert len(rules) == 4
    assert rule(rules, "DEFAULT_MESSAGES_PER_HOUR") == (
        "id=DEFAULT_MESSAGES_PER_HOUR; protocol_state==DATA; sasl_username=~^.+$; "
        "action=rate(sasl_username/200/3600/450 4.7.1 This login has reached its limit of 200 messages an hour"
        " - try again later)"
    )
    assert "action=rcpt(sasl_username/2000/86400/" in rule(rules, "DEFAULT_RECIPIENTS_PER_DAY")


def test_a_login_of_its_own_gets_its_limits_instead_of_the_defaults_never_both():
    rules = postfwd_rules(DEFAULTS, {"Big.Sender@Runbox.com": {"messages_per_hour": 5000}})
    own = rule(rules, "LOGIN1_MESSAGES_PER_HOUR")
    assert "sasl_username==big.sender@runbox.com;" in own and "/5000/3600/" in own
    assert "/1000/86400/" in rule(rules, "LOGIN1_MESSAGES_PER_DAY"), "a limit left out is the default's"
    default = rule(rules, "DEFAULT_MESSAGES_PER_HOUR")
    assert r"sasl_username=~^(?!(?:big\.sender@runbox\.com)$).+$;" in default


def test_a_limit_of_zero_is_not_counted():
    rules = postfwd_rules(
        dict(DEFAULTS, messages_per_day=0, recipients_per_day=0), {"a@runbox.com": {"messages_per_hour": 0}}
    )
    assert [r.split(";")[0] for r in rules] == [
        "id=LOGIN1_RECIPIENTS_PER_HOUR",
        "id=DEFAULT_MESSAGES_PER_HOUR",
        "id=DEFAULT_RECIPIENTS_PER_HOUR",
    ]


def test_no_reply_text_holds_what_ends_a_postfwd_item_or_argument():
    for line in postfwd_rules(DEFAULTS, {"a@runbox.com": {"recipients_per_day": 7}}):
        reply = line.split("/", 3)[3]
        assert not set(";,/") & set(reply[:-1]), line


@pytest.mark.parametrize(
    ("defaults", "per_login", "message"),
    [
        (dict(DEFAULTS, messages_per_hour=-1), {}, "default limits: messages_per_hour must be a whole number"),
        (
            dict(DEFAULTS, messages_per_day="lots"),
            {},
            "messages_per_day must be a whole number (0: not counted), not 'lots'",
        ),
        ({"messages_per_hour": 1}, {}, "default limits: messages_per_day is missing"),
        (DEFAULTS, {"not a login": {}}, "per-login limits: 'not a login' is not a login"),
        (DEFAULTS, {"a@runbox.com": {"mails": 3}}, "per-login limits of a@runbox.com: unknown limit 'mails'"),
        (DEFAULTS, {"a@runbox.com": {}, "A@runbox.com": {}}, "per-login limits: 'A@runbox.com' is listed twice"),
    ],
)
def test_a_bad_limit_or_login_is_named(defaults, per_login, message):
    with pytest.raises(LimitError) as error:
        postfwd_rules(defaults, per_login)
    assert message in str(error.value)
