# Copyright: smtp-submission developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""TXT lookups through the host's resolver (dnspython, Debian's python3-dnspython).

dnspython is imported when a lookup is made, so that a module that needs none
(every key already active) runs without it.
A lookup follows CNAMEs, as a DKIM verifier does: a hosted domain's selector
name answers with the record in the provider's zone.
"""

from __future__ import annotations


class LookupFailed(LookupError):
    """The resolver gave no answer (a timeout, SERVFAIL): not the same as no record."""


class Resolver:
    """Lookups through the host's resolver, or through nameservers (addresses) on port."""

    def __init__(self, timeout=5.0, nameservers=None, port=53):
        import dns.exception  # noqa: PLC0415 - only when a lookup is made
        import dns.resolver  # noqa: PLC0415

        try:
            self.resolver = dns.resolver.Resolver(configure=not nameservers)
            if nameservers:
                self.resolver.nameservers = list(nameservers)
                self.resolver.port = port
        except (dns.exception.DNSException, ValueError) as exc:  # no resolv.conf, a bad nameserver
            raise LookupFailed(f"no resolver: {exc}") from None
        self.resolver.lifetime = timeout

    def values(self, name, kind):
        """TXT: each record's strings joined; CNAME: the target without its final dot; [] for none.
        LookupFailed when the resolver gives no answer (a timeout, SERVFAIL)."""
        import dns.exception  # noqa: PLC0415
        import dns.resolver  # noqa: PLC0415

        try:
            answer = self.resolver.resolve(name, kind)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except dns.exception.DNSException as exc:  # a timeout, SERVFAIL, no resolver configured
            raise LookupFailed(f"{name}: {exc}") from None
        if kind == "TXT":
            return [b"".join(record.strings).decode("ascii", "replace") for record in answer]
        return [record.to_text().rstrip(".") for record in answer]
