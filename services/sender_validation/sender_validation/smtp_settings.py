"""A user's SMTP client settings, from the deployed listeners.

What the page shows is what Postfix serves: the role writes the listeners
(host name, STARTTLS ports, implicit-TLS ports, whether TLS is required) into
the service's configuration from the same variables submission_mta reads.
"""

from __future__ import annotations


def smtp_username(login, primary_domain):
    """The username a mail client gives: the bare name at the primary domain, user%domain elsewhere."""
    local, domain = login.split("@", 1)
    return local if domain == primary_domain.lower() else f"{local}%{domain}"


def smtp_settings(login, primary_domain, listeners):
    """One entry per listener: server, ports, security, username, password note."""
    username = smtp_username(login, primary_domain)
    settings = []
    for listener in listeners:
        required = listener.get("tls") == "required"
        settings.append(
            {
                "server": listener["hostname"],
                "ports": list(listener["ports"]),
                "implicit_tls_ports": list(listener.get("implicit_tls_ports", [])),
                "security": "STARTTLS (required)" if required else "STARTTLS",
                "username": username,
                "mobile_example": f"{listener['hostname']}:{listener['ports'][-1]}",
            }
        )
    return settings
