"""The host's own recipients: its mail reaches the operator, mail clients
cannot reach it, and only root and the project's services may run sendmail."""

import uuid

from host_probe import authenticated, wait_for_sink


def operator_address(host, deployment):
    return host.ansible.get_variables().get("submission_mta_operator_address", f"postmaster@{deployment.domain}")


def test_mail_to_root_and_postmaster_reaches_the_operator(host, deployment, sink):
    operator = operator_address(host, deployment)
    for local_name in ("root", "postmaster"):
        token = uuid.uuid4().hex
        sent = host.run(
            "printf 'Subject: host notice %s\\n\\nA notice for %s.\\n' %s %s | /usr/sbin/sendmail -i %s",
            token,
            local_name,
            token,
            local_name,
            local_name,
        )
        assert sent.rc == 0, f"sendmail {local_name}: {sent.stderr}"
        received = wait_for_sink(host, sink, token)
        assert received is not None, f"mail to {local_name} never left the host: " + host.run("postqueue -p").stdout
        assert received["X-RcptTo"] == operator, f"mail to {local_name} went to {received['X-RcptTo']}"


def test_a_logged_in_user_cannot_reach_local_recipients(host, probe, deployment):
    account = deployment.accounts[0]
    endpoint = deployment.endpoints[0]
    hostname = host.check_output("postconf -h myhostname")
    # Without a domain, Postfix qualifies a recipient with its own name: local
    # too. Bare "postmaster" stays open, as RFC 5321 (4.5.1) requires; it
    # reaches the operator, off the host.
    local = ["root@localhost", f"postmaster@{hostname}", "root@[127.0.0.1]", "root@[IPv6:::1]", "root"]
    results = probe.run([authenticated(endpoint, account, recipient) for recipient in [deployment.recipient, *local]])
    assert results[0]["rcpt"][0][0] == 250, f"the control recipient was refused: {results[0]}"
    for recipient, result in zip(local, results[1:], strict=True):
        code, text = result["rcpt"][0]
        assert 500 <= code < 600 and "5.7.1" in text, f"RCPT TO:<{recipient}> answered {code} {text}"


def test_an_unprivileged_local_user_cannot_run_sendmail(host):
    token = uuid.uuid4().hex
    refused = host.run(
        "printf 'Subject: %s\\n\\nx\\n' | runuser -u nobody -- /usr/sbin/sendmail -i someone@example.net", token
    )
    assert refused.rc != 0, "nobody's sendmail was accepted"
    assert "not allowed" in refused.stderr, refused.stderr
    # And root's is, so the refusal is not a broken sendmail.
    assert host.run("printf 'Subject: %s\\n\\nx\\n' | /usr/sbin/sendmail -i root", token).rc == 0


def test_postfix_keeps_free_space_for_the_queue(host):
    minfree = int(host.check_output("postconf -h queue_minfree"))
    size_limit = int(host.check_output("postconf -h message_size_limit"))
    assert minfree >= size_limit * 3 // 2, f"queue_minfree {minfree} < 1.5 x message_size_limit {size_limit}"
