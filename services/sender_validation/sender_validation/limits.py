"""The abuse limits on confirmation mails: otherwise the form mails third parties at will.

Counted over the mails sent (``request_log``): per login, per hour and per day;
per target address, across all logins, one per interval and per day; and the
requests a login has open. The web answer is the same whether a mail went out
or not, so the limits tell a prober nothing.
"""

from __future__ import annotations

import dataclasses

HOUR, DAY = 3600, 86400


@dataclasses.dataclass(frozen=True)
class Limits:
    login_per_hour: int = 3
    login_per_day: int = 10
    sender_interval: int = 600
    sender_per_day: int = 3
    pending_per_login: int = 5


def refusal(store, sender, login, now, limits):
    """Why no mail may go to sender for login now, or None when one may."""
    checks = [
        (lambda: store.blocked(sender, login, now), f"{login} was told 'not me' by {sender}"),
        (
            lambda: store.requests_by_login(login, now - HOUR) >= limits.login_per_hour,
            f"{login}: {limits.login_per_hour} requests in the last hour",
        ),
        (
            lambda: store.requests_by_login(login, now - DAY) >= limits.login_per_day,
            f"{login}: {limits.login_per_day} requests in the last day",
        ),
        (
            lambda: store.requests_for_sender(sender, now - limits.sender_interval) >= 1,
            f"{sender}: mailed in the last {limits.sender_interval} s",
        ),
        (
            lambda: store.requests_for_sender(sender, now - DAY) >= limits.sender_per_day,
            f"{sender}: {limits.sender_per_day} mails in the last day",
        ),
        (
            lambda: store.pending_count(login, now) >= limits.pending_per_login,
            f"{login}: {limits.pending_per_login} requests pending",
        ),
    ]
    return next((reason for over, reason in checks if over()), None)
