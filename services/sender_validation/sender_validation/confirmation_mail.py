"""The confirmation message, and its way out through the host's own Postfix.

It goes from the provider's no-reply address, never from the address being
validated, to that address: plain text, the link, the login that asked and the
client address it asked from, marked Auto-Submitted so that autoresponders stay
quiet (RFC 3834). sendmail(1) hands it to pickup, not to smtpd: no login, no
sender check, no network.
"""

from __future__ import annotations

import dataclasses
import email.message
import email.utils
import subprocess

SENDMAIL = "/usr/sbin/sendmail"


@dataclasses.dataclass(frozen=True)
class MailSettings:
    no_reply: str
    service_name: str
    valid_hours: int


def confirmation_message(request, link, settings):
    """The message for a store.Request: to its sender, naming its login and client address."""
    sender, login, client_address = request.sender, request.login, request.client_address
    no_reply, service_name, valid_hours = settings.no_reply, settings.service_name, settings.valid_hours
    message = email.message.EmailMessage()
    message["From"] = email.utils.formataddr((service_name, no_reply))
    message["To"] = sender
    message["Subject"] = f"Confirm that {login} may send as {sender}"
    message["Date"] = email.utils.formatdate(localtime=False)
    message["Message-ID"] = email.utils.make_msgid(domain=no_reply.split("@", 1)[1])
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(
        f"""The account {login} asked to send mail with this address ({sender})
as its From address. The request came from {client_address}.

If that was you, open this link, log in as {login}, and confirm:

  {link}

The link works once, for {valid_hours} hours.

If it was not you, open the link and choose "This was not me": the request is
cancelled and {login} cannot ask for this address again for 30 days. Doing
nothing also leaves the address unusable by {login}.
""",
        # Not quoted-printable: a soft line break would cut the link in two for
        # any reader that does not decode it.
        cte="7bit",
    )
    return message


def send(message, envelope_sender, recipient, sendmail=SENDMAIL):
    """Hand the message to the local Postfix, for recipient (the validated
    address as stored, never the To header read back: a mail library decodes
    what it reads); raises OSError if sendmail fails."""
    proc = subprocess.run(
        [sendmail, "-i", "-f", envelope_sender, "--", recipient],
        input=message.as_bytes(),
        capture_output=True,
        check=False,
        timeout=60,
    )
    if proc.returncode != 0:
        raise OSError(f"sendmail exited {proc.returncode}: {proc.stderr.decode(errors='replace').strip()}")
