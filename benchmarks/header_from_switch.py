"""The per-listener switch of the header-From check, as a client meets it.

Runs on the benchmark host (molecule/benchmark's verify step): one account
sends a message whose From is another account's address, once through the
service (smtp.<domain>) and once through its listener with
header_from_check: false (unchecked.<domain>). The first must be refused with
550 5.7.1, the second accepted; the envelope sender is the account's own both
times. Exits non-zero, saying what it got, otherwise.

    SMTP_PASSWORD=... python3 header_from_switch.py --login load000 \
        --sender load000@runbox.com --foreign load002@runbox.com
"""

import argparse
import os
import smtplib
import ssl
import sys


def send(host, options, password):
    """The answer to the message's final dot: the login's own envelope, the foreign From."""
    with smtplib.SMTP(host, options.port, timeout=30) as client:
        client.starttls(context=ssl.create_default_context())
        client.login(options.login, password)
        client.mail(options.sender)
        client.rcpt(options.recipient)
        message = f"From: <{options.foreign}>\r\nTo: <{options.recipient}>\r\nSubject: switch\r\n\r\nx\r\n"
        return client.data(message.encode())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--login", required=True)
    parser.add_argument("--sender", required=True)
    parser.add_argument("--foreign", required=True, help="an address that is not the login's")
    parser.add_argument("--checked-host", default="smtp.runbox.com")
    parser.add_argument("--unchecked-host", default="unchecked.runbox.com")
    parser.add_argument("--port", type=int, default=587)
    parser.add_argument("--recipient", default="postmaster@example.net")
    options = parser.parse_args()
    password = os.environ["SMTP_PASSWORD"]
    checked = send(options.checked_host, options, password)
    unchecked = send(options.unchecked_host, options, password)
    print(f"{options.checked_host}: {checked}\n{options.unchecked_host}: {unchecked}")
    if checked[0] != 550 or b"5.7.1" not in checked[1] or unchecked[0] != 250:
        return "expected 550 5.7.1 from the checked listener and 250 from the unchecked one"
    return 0


if __name__ == "__main__":
    sys.exit(main())
