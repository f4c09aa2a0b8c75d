"""The login matrix: which login forms Dovecot's SASL service accepts for Postfix.

`user` means user@<primary domain>, `user%domain` means user@domain, `user@domain`
is accepted too, case does not matter; every other form is refused with 535.
"""

import pytest
from host_probe import session

# Run on a single host and on every MTA of a fleet (molecule scenario fleet).
pytestmark = pytest.mark.fleet


def accepted_forms(account, domain):
    local, account_domain = account.address.split("@")
    forms = {account.login, account.address, f"{local}%{account_domain}", account.login.upper()}
    if account_domain == domain:
        forms.add(local)
    return sorted(forms)


def malformed_forms(account):
    local, domain = account.address.split("@")
    return [
        f"{local}%%{domain}",  # two percent signs
        f"{local}%{domain}%{domain}",
        f"{local}%{domain}@{domain}",  # percent together with at
        f"{local}@{domain}%{domain}",
        f"%{domain}",  # empty local part
        f"@{domain}",
        f"{local}%",  # empty domain
        f"{local}@",
        f"{local[0]} {local[1:]}@{domain}",  # space
        f"{account.address} ",
        f"{local}\t@{domain}",  # control characters
        f"{local}\x01@{domain}",
        f"{local}\x7f@{domain}",
    ]


def test_every_accepted_login_form_authenticates(probe, deployment):
    cases, labels = [], []
    for endpoint in deployment.endpoints:
        for account in deployment.accounts:
            for login in accepted_forms(account, deployment.domain):
                cases.append(session(endpoint, login=login, password=account.password))
                labels.append(f"{endpoint.label} {login!r}")
    failures = [
        f"{label}: {result.get('auth') or result}"
        for label, result in zip(labels, probe.run(cases), strict=True)
        if (result.get("auth") or [0])[0] != 235
    ]
    assert not failures, "refused:\n" + "\n".join(failures)


def refused_cases(deployment):
    for account in deployment.accounts:
        yield "wrong password", account.login, account.password + "x"
        yield "unknown user", "nobody-here%" + account.address.split("@")[1], account.password
        for login in malformed_forms(account):
            yield "malformed", login, account.password
    hosted = [a for a in deployment.accounts if not a.address.endswith("@" + deployment.domain)]
    for account in hosted:
        # A bare login means the primary domain, where this user has no account.
        yield "bare login of a hosted user", account.address.split("@")[0], account.password


@pytest.mark.parametrize("listener_index", [0, 1])
def test_every_other_login_is_refused_with_535(probe, deployment, listener_index):
    endpoints = deployment.first_endpoint_of_each_listener()
    if listener_index >= len(endpoints):
        pytest.skip(f"the inventory defines {len(endpoints)} listener(s)")
    endpoint = endpoints[listener_index]
    cases, labels = [], []
    for why, login, password in refused_cases(deployment):
        cases.append(session(endpoint, login=login, password=password, source=probe.unseen_source(endpoint)))
        labels.append(f"{why} {login!r}")
    failures = [
        f"{label}: {result.get('auth') or result}"
        for label, result in zip(labels, probe.run(cases), strict=True)
        if (result.get("auth") or [0])[0] != 535
    ]
    assert not failures, f"{endpoint.label} did not refuse with 535:\n" + "\n".join(failures)
