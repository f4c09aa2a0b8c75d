# Copyright: smtp-submission developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Per-login sending limits, as postfwd rules.

A limit is a number of messages or of recipients a SASL login may send in an
hour or a day. postfwd counts them at Postfix's DATA stage, where a request
carries the login (sasl_username) and the message's recipient_count: rate()
adds one a message, rcpt() the message's recipients. Over a limit, the client
gets the limit's 4xx reply for the message and may send again when the
window is over.

Logins listed apart (per_login) get their own limits instead of the defaults,
never both. A limit of 0 is not counted: each counted limit costs postfwd about
a millisecond of CPU a message (benchmarks/README.md). Pure Python, no Ansible
import.
"""

from __future__ import annotations

import re

from ansible_collections.mailops.submission.plugins.module_utils.sender_address import AddressError, normalize_login

# limit name -> (postfwd counter, seconds, what the reply calls it)
LIMITS = {
    "messages_per_hour": ("rate", 3600, "messages an hour"),
    "messages_per_day": ("rate", 86400, "messages a day"),
    "recipients_per_hour": ("rcpt", 3600, "recipients an hour"),
    "recipients_per_day": ("rcpt", 86400, "recipients a day"),
}


class LimitError(ValueError):
    """A limit or a login that cannot be made into a rule; the message names it."""


def _checked_limits(limits, where):
    unknown = sorted(set(limits) - set(LIMITS))
    if unknown:
        raise LimitError(f"{where}: unknown limit {unknown[0]!r} (known: {', '.join(LIMITS)})")
    checked = {}
    for name, value in limits.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise LimitError(f"{where}: {name} must be a whole number (0: not counted), not {value!r}")
        checked[name] = value
    return checked


def postfwd_rules(defaults, per_login=None):
    """postfwd rule lines: the defaults for every login but those of per_login
    ({login: {limit: number}}), which get theirs. Raises LimitError."""
    defaults = _checked_limits(defaults, "default limits")
    missing = sorted(set(LIMITS) - set(defaults))
    if missing:
        raise LimitError(f"default limits: {missing[0]} is missing")
    own = {}
    for login, limits in (per_login or {}).items():
        try:
            canonical = normalize_login(login)
        except AddressError as exc:
            raise LimitError(f"per-login limits: {login!r} is not a login: {exc.reason}") from None
        if canonical in own:
            raise LimitError(f"per-login limits: {login!r} is listed twice")
        own[canonical] = dict(defaults, **_checked_limits(limits or {}, f"per-login limits of {login}"))
    lines = []
    for number, (login, limits) in enumerate(sorted(own.items()), start=1):
        lines += _rules(f"LOGIN{number}", f"sasl_username=={login}", limits)
    others = "|".join(re.escape(login) for login in sorted(own))
    match = f"sasl_username=~^(?!(?:{others})$).+$" if own else "sasl_username=~^.+$"
    lines += _rules("DEFAULT", match, defaults)
    return lines


def _rules(prefix, match, limits):
    rules = []
    for name, value in limits.items():
        if value == 0:
            continue
        counter, seconds, unit = LIMITS[name]
        # No ";" (ends a postfwd item), "," or "/" (separate rate()'s arguments) in the text.
        reply = f"450 4.7.1 This login has reached its limit of {value} {unit} - try again later"
        rules.append(
            f"id={prefix}_{name.upper()}; protocol_state==DATA; {match}; "
            f"action={counter}(sasl_username/{value}/{seconds}/{reply})"
        )
    return rules
