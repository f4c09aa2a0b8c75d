"""What the Received line of a submission tells recipients about the user."""

import uuid

from host_probe import Probe, authenticated, client_log_line, message, queue_id, wait_for_sink


def test_received_line_hides_the_client_but_the_log_keeps_it(host, probe, deployment, sink):
    hidden = host.ansible.get_variables().get("submission_mta_received_privacy", True)
    account, endpoint = deployment.accounts[0], deployment.endpoints[0]
    token = uuid.uuid4().hex
    source = Probe.unseen_source(endpoint)
    data = message(account.address, deployment.recipient, token)
    result = probe.one(authenticated(endpoint, account, deployment.recipient, data=data, source=source))
    queued = queue_id(result)
    assert queued, f"not accepted: {result}"
    received = wait_for_sink(host, sink, token)
    assert received is not None, "the message never reached the sink"
    ours = received.get_all("Received")[0]  # the newest line: Postfix's (the sink adds none)
    client_address = source or host.interface.default().addresses[0]
    if hidden:
        assert ours.startswith("by ") and "SMTPSA" in ours, f"not an authenticated submission's line: {ours}"
        for trace in ("probe.test", client_address, "from "):
            assert trace not in ours, f"the Received line shows {trace!r}: {ours}"
    else:
        assert "probe.test" in ours and client_address in ours, f"Postfix's full line was expected: {ours}"
    log = client_log_line(host, queued)
    assert f"[{client_address}]" in log, f"the log lost the client: {log}"
