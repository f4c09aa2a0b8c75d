"""What the validation-service tests share: the SMTP answer for a sender, the
confirmation link from the test sink, a fresh external address."""

import re
import time
import uuid

from host_probe import first_answer_to_rcpt, sender_session


def rcpt_code(probe, deployment, account, sender):
    result = probe.one(sender_session(deployment.endpoints[0], account, sender, deployment.recipient))
    return first_answer_to_rcpt(result)


def confirmation_link(host, sink, sender, base_url, timeout=60):
    """The link in the confirmation message to sender, from the test sink."""
    pattern = re.escape(base_url) + r"/confirm/[A-Za-z0-9_-]+"
    for _ in range(timeout):
        found = host.run("grep -rlF -- %s %s", f"To: {sender}", sink)
        for path in found.stdout.split():
            link = re.search(pattern, host.file(path).content_string)
            if link:
                return link.group(0)
        time.sleep(1)
    raise AssertionError(f"no confirmation message to {sender} in {sink} after {timeout} s")


def new_address():
    return f"web-{uuid.uuid4().hex[:12]}@gmail.example"
