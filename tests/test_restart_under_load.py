"""A restart in the middle of a load run, of Postfix or of the header-From
milter, keeps every message that was accepted, and accepts nothing unchecked."""

import json
import uuid

import pytest
from host_probe import LOAD_B64, drain_queue, load_plan, sink_copies


@pytest.mark.parametrize("service", ["postfix", "from-check"])
def test_a_restart_under_load_loses_and_doubles_nothing(host, deployment, sink, service, host_secrets):
    run_id = "restart-" + uuid.uuid4().hex[:10]
    plan = load_plan(deployment, run_id, clients=8)
    # The plan holds the accounts' passwords: a 0600 file, not an argument.
    plan_file = host_secrets.put(json.dumps(plan))
    # The restart comes when the clients have been sending for a while and
    # goes on while they keep opening sessions.
    cmd = host.run(
        'out=$(mktemp); python3 -c "$(echo %s | base64 -d)" %s > "$out" & load=$!; '
        'sleep 8; systemctl restart %s; wait $load; rm -f %s; cat "$out"; rm -f "$out"',
        LOAD_B64,
        plan_file,
        service,
        plan_file,
    )
    assert cmd.rc == 0, cmd.stderr
    result = json.loads(cmd.stdout)
    # Postfix's restart breaks sessions; the milter's makes smtpd defer (4xx)
    # what it was checking and the sessions that start before it is back.
    assert result["errors"] or result["deferred"], (
        f"nothing broke or was deferred: the restart did not happen under load ({result['sessions']} sessions)"
    )
    accepted, unanswered, deferred = set(result["accepted"]), set(result["unanswered"]), set(result["deferred"])
    assert len(accepted) > 50, f"only {len(accepted)} messages accepted: {result['errors']}"
    assert not result["wrong"], result["wrong"][:5]

    assert drain_queue(host), "the queue did not drain in 120 s: " + host.run("postqueue -p").stdout[-2000:]
    copies = sink_copies(host, sink, run_id)
    missing = sorted(accepted - copies.keys())
    doubled = sorted(token for token, n in copies.items() if n > 1)
    strangers = sorted(copies.keys() - accepted - unanswered)
    assert not deferred & copies.keys(), f"answered 4xx but delivered: {sorted(deferred & copies.keys())[:5]}"
    assert not missing, f"{len(missing)} of {len(accepted)} messages answered 250 are not in the sink: {missing[:5]}"
    # SMTP lets a message arrive twice when the 250 after its final dot was lost:
    # here, a delivery to the sink that the restart cut off after the sink took
    # the message, which Postfix then delivered again. Any other second copy is
    # a fault: the message queued twice, or delivered twice to Postfix's knowledge.
    for token in doubled:
        log = host.run(
            "journalctl --no-pager -o cat --since=-15min | grep -F %s", f"message-id=<{token}@load.test>"
        ).stdout.split("\n")
        queue_ids = sorted({line.split(":")[0].split()[-1] for line in log if line.strip()})
        assert len(queue_ids) == 1, f"{token} queued {len(queue_ids)} times: {queue_ids}"
        sent = host.run(
            "journalctl --no-pager -o cat --since=-15min | grep -cE %s", f"{queue_ids[0]}: to=<.*status=sent"
        ).stdout.strip()
        assert copies[token] == 2 and sent == "1", (
            f"{token} ({queue_ids[0]}): {copies[token]} copies in the sink, {sent} deliveries logged by Postfix"
        )
    assert not strangers, f"in the sink though never answered 250 nor cut off after the final dot: {strangers[:5]}"
