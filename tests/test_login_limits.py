"""Per-login limits (roles/submission_ratelimit, counted by the header-From
milter in Redis): a login that has sent its messages or recipients for the
hour gets 450 4.7.1 saying so, while another login from the same client
address (a NAT full of users) sends on; with the counter store down, mail
passes uncounted and the milter says so in the log.

The limits are the rate-limited verification login's own
(submission_ratelimit_logins); the tests clear its count first, and stop Redis
for a moment, so they are not for live hosts.
"""

import uuid

import pytest
from deployment import postfix_setting
from host_probe import Probe, authenticated, message, queue_id

REDIS_SOCKET = "/run/redis/redis-server.sock"


def redis(host, *args):
    """redis-cli on the host's counter store, as root."""
    return host.run("redis-cli -s %s " + " ".join(["%s"] * len(args)), REDIS_SOCKET, *args)


@pytest.fixture
def limited(host, deployment):
    account = deployment.rate_limited_account
    if account is None:
        pytest.skip("submission_verify_rate_limited_account is not set: no login to use up")
    variables = host.ansible.get_variables()
    limits = dict(
        {
            name: variables.get(f"submission_ratelimit_{name}", default)
            for name, default in (("messages_per_hour", 200), ("recipients_per_hour", 500))
        },
        **variables.get("submission_ratelimit_logins", {}).get(account.address, {}),
    )
    assert limits["messages_per_hour"] <= 20 and limits["recipients_per_hour"] <= 50, (
        f"{account.address}'s limits are too high for a test to reach: {limits}"
    )
    # A fresh count: the login's hash in Redis (from_check/limits.py: limits:<login>).
    cleared = redis(host, "DEL", f"limits:{account.address.lower()}")
    assert cleared.rc == 0 and cleared.stdout.strip() in {"0", "1"}, f"Redis did not answer: {cleared}"
    return account, limits


def send(probe, endpoint, account, recipients, source):
    data = message(account.address, recipients[0], uuid.uuid4().hex)
    case = authenticated(endpoint, account, recipients[0], data=data, source=source)
    case["rcpt_to"] = recipients
    return probe.one(case)


def test_one_logins_messages_are_limited_and_another_login_on_its_address_is_not(probe, deployment, limited):
    account, limits = limited
    endpoint = deployment.endpoints[0]
    nat = Probe.unseen_source(endpoint)
    allowed = limits["messages_per_hour"]
    for n in range(allowed):
        result = send(probe, endpoint, account, [deployment.recipient], nat)
        assert result["data"][0] == 250, f"message {n + 1} of {allowed} allowed was refused: {result}"
    over = send(probe, endpoint, account, [deployment.recipient], nat)
    code, text = over["data"]
    assert code == 450 and "4.7.1" in text and f"limit of {allowed} messages an hour" in text, over
    # Another user behind the same address sends on.
    other = deployment.accounts[0]
    result = send(probe, endpoint, other, [deployment.recipient], nat)
    assert result["data"][0] == 250, f"{other.login} was held by {account.login}'s limit: {result}"


def test_recipients_are_counted_over_messages(probe, deployment, limited):
    account, limits = limited
    endpoint = deployment.endpoints[0]
    source = Probe.unseen_source(endpoint)
    allowed = limits["recipients_per_hour"]
    first = [f"first{n}@example.net" for n in range(allowed - 1)]
    assert send(probe, endpoint, account, first, source)["data"][0] == 250
    over = send(probe, endpoint, account, ["one@example.net", "two@example.net"], source)
    code, text = over["data"]
    assert code == 450 and f"limit of {allowed} recipients an hour" in text, over


def test_a_message_has_at_most_the_recipient_limit(host, probe, deployment):
    limit, expected = postfix_setting(host, "smtpd_recipient_limit", "submission_mta_recipient_limit", 100)
    assert limit == expected <= 100, f"smtpd_recipient_limit is {limit}, the inventory says {expected}"
    account, endpoint = deployment.accounts[0], deployment.endpoints[0]
    recipients = [f"r{n}@example.net" for n in range(limit + 1)]
    case = authenticated(endpoint, account, recipients[0])
    case["rcpt_to"] = recipients
    rcpt = probe.one(case)["rcpt"]
    assert all(code == 250 for code, _ in rcpt[:limit]), rcpt[:3]
    assert rcpt[limit][0] == 452 and "too many recipients" in rcpt[limit][1].lower(), rcpt[limit]


@pytest.fixture
def redis_stopped(host):
    stopped = host.run("systemctl stop redis-server")
    assert stopped.rc == 0, stopped.stderr
    yield
    started = host.run(
        "systemctl start redis-server && for i in $(seq 50); do redis-cli -s %s PING | grep -qx PONG && exit 0;"
        " sleep 0.2; done; exit 1",
        REDIS_SOCKET,
    )
    assert started.rc == 0, f"Redis did not come back: {started.stderr}"


def test_with_the_counter_store_down_mail_passes_uncounted_and_the_log_says_so(
    host, probe, deployment, limited, redis_stopped
):
    account, limits = limited
    endpoint = deployment.endpoints[0]
    source = Probe.unseen_source(endpoint)
    # More than the login's limit: none of it counted.
    ids = []
    for n in range(limits["messages_per_hour"] + 1):
        result = send(probe, endpoint, account, [deployment.recipient], source)
        assert result["data"][0] == 250, f"message {n + 1} was refused with the counter store down: {result}"
        ids.append(queue_id(result))
    logged = host.run(
        "for i in $(seq 40); do journalctl --no-pager -o cat -u from-check --since=-15min"
        " | grep -F '%s: login=%s sent uncounted: the counter store cannot be reached' && exit 0;"
        " sleep 0.5; done; exit 1",
        ids[-1],
        account.address.lower(),
    )
    assert logged.rc == 0, f"no log line says {ids[-1]} went uncounted"
