"""The milter: pymilter (Debian's python3-milter) callbacks around check.FromCheck.

It asks Postfix for no more than it needs: the login with MAIL FROM, each
header without waiting (no reply expected), the verdict at the end of the
headers, and nothing of the body.
"""

from __future__ import annotations

import sys

import Milter

from from_check.check import FromCheck

REPLIES = {
    "refuse": (Milter.REJECT, "550", "5.7.1"),
    "defer": (Milter.TEMPFAIL, "451", "4.3.0"),
}


def reply_text(text):
    """A reply line libmilter takes as it is: ASCII, no '%' directive, one line."""
    text = text.encode("ascii", "backslashreplace").decode()
    return " ".join(text.replace("%", "%%").split())[:400]


class FromCheckMilter(Milter.Base):
    check: FromCheck = None

    def __init__(self):
        self.login = None
        self.from_values = []

    # No reply awaited, and only the macro it reads: a round trip and bytes less
    # for every message.
    @Milter.noreply
    @Milter.symlist("{auth_authen}")
    def envfrom(self, mailfrom, *parameters):
        self.login = self.getsymval("{auth_authen}")
        self.from_values = []
        return Milter.CONTINUE

    @Milter.noreply
    def header(self, name, value):
        if name.lower() == "from":
            self.from_values.append(value)
        return Milter.CONTINUE

    @Milter.symlist("i")
    def eoh(self):
        verdict = self.check.verdict(self.login, self.from_values)
        if verdict.action == "accept":
            return Milter.ACCEPT
        action, code, status = REPLIES[verdict.action]
        queue_id = self.getsymval("i") or "-"
        print(
            f"{queue_id}: {verdict.action} login={self.login or '-'}: {verdict.text}"
            + (f" ({verdict.detail})" if verdict.detail else ""),
            file=sys.stderr,
            flush=True,
        )
        self.setreply(code, status, reply_text(verdict.text))
        return action


def run(config):
    FromCheckMilter.check = FromCheck.from_config(config)
    Milter.factory = FromCheckMilter
    # Nothing is changed in a message: the milter asks for no modification.
    Milter.set_flags(0)
    Milter.runmilter("from-check", config["socket"], timeout=config.get("timeout", 30))
