# Copyright: smtp-submission developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Per-login sending limits: the rule, once, for the role and the milter.

A limit is a number of messages or of recipients a SASL login may send in an
hour or a day. The header-From milter counts them in the counter store (Redis)
at the end of each message, one atomic script call a message; over a
limit, the client gets the limit's 4xx reply (``limit_reply``) for the message.

The counting is rolling, not by clock hour: a limit of 200 messages an hour
lets a login send 200 at once, then one more every 18 seconds (3600 / 200),
so a login cannot send twice its limit across the turn of an hour.

Logins listed apart (per_login) get their own limits instead of the defaults,
never both: a limit a login's entry leaves out is the default's. A limit of 0
is not counted. Pure Python, no Ansible import: ``limit_table`` is the role's
filter, ``limits_of`` and ``limit_reply`` the milter's.
"""

from __future__ import annotations

from ansible_collections.mailops.submission.plugins.module_utils.sender_address import AddressError, normalize_login

# limit name -> (what it counts: "m" messages or "r" recipients, seconds, what the reply calls it)
LIMITS = {
    "messages_per_hour": ("m", 3600, "messages an hour"),
    "messages_per_day": ("m", 86400, "messages a day"),
    "recipients_per_hour": ("r", 3600, "recipients an hour"),
    "recipients_per_day": ("r", 86400, "recipients a day"),
}


class LimitError(ValueError):
    """A limit or a login that cannot be made into a rule; the message names it."""


def _checked_limits(limits, where):
    if not isinstance(limits, dict):
        raise LimitError(f"{where}: must be a mapping of limit names to numbers, not {limits!r}")
    unknown = sorted(set(limits) - set(LIMITS))
    if unknown:
        raise LimitError(f"{where}: unknown limit {unknown[0]!r} (known: {', '.join(LIMITS)})")
    checked = {}
    for name, value in limits.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise LimitError(f"{where}: {name} must be a whole number (0: not counted), not {value!r}")
        checked[name] = value
    return checked


def limit_table(defaults, per_login=None):
    """The limits every login gets, checked: {"default": {limit: number},
    "logins": {canonical login: its limits, the defaults filled in}}. Raises
    LimitError naming the first bad value. A table is its own input again:
    limit_table(table["default"], table["logins"]) == table."""
    defaults = _checked_limits(defaults, "default limits")
    missing = sorted(set(LIMITS) - set(defaults))
    if missing:
        raise LimitError(f"default limits: {missing[0]} is missing")
    if not isinstance(per_login or {}, dict):
        raise LimitError(f"per-login limits: must be a mapping of logins to limits, not {per_login!r}")
    own = {}
    for login, limits in (per_login or {}).items():
        try:
            canonical = normalize_login(login)
        except AddressError as exc:
            raise LimitError(f"per-login limits: {login!r} is not a login: {exc.reason}") from None
        if canonical in own:
            raise LimitError(f"per-login limits: {login!r} is listed twice")
        own[canonical] = _ordered(dict(defaults, **_checked_limits(limits or {}, f"per-login limits of {login}")))
    return {"default": _ordered(defaults), "logins": dict(sorted(own.items()))}


def _ordered(limits):
    return {name: limits[name] for name in LIMITS}


def counted_login(login):
    """The login as the limits know it: canonical (normalize_login) where it
    is a login, else folded to lower case (a counted login is never refused
    here: Dovecot has already let it in)."""
    try:
        return normalize_login(login)
    except AddressError:
        return login.lower()


def limits_of(table, login):
    """A login's counted limits (not 0) from a limit_table: [(name, number, "m" or "r", seconds)]."""
    limits = table["logins"].get(counted_login(login), table["default"])
    return [(name, value, *LIMITS[name][:2]) for name, value in limits.items() if value]


def limit_reply(name, value):
    """The SMTP reply for a message over a login's limit: it may go later."""
    return f"450 4.7.1 This login has reached its limit of {value} {LIMITS[name][2]} - try again later"


def over_limit_reply(name, value):
    """The SMTP reply for a message that alone passes a login's limit (more
    recipients than it may send in the limit's time): it never will go."""
    return (
        f"550 5.7.1 This message has more recipients than this login's limit of {value} {LIMITS[name][2]}"
        " - split it, or ask for a higher limit"
    )
