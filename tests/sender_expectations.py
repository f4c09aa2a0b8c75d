"""Who may send as what, worked out from the inventory's accounts the way
Postfix reads the allowlist tables: the full address, then without its +tag,
then @domain; the first key that exists decides. The envelope tests and the
header-From tests expect the same answers from it."""


def owners(accounts):
    """sender key -> logins, as the two tables hold them."""
    keys = {}
    for account in accounts:
        login = account["address"].lower()
        senders = [account["address"], *account.get("aliases", []), *account.get("external_senders", [])]
        senders += ["@" + domain for domain in account.get("domains", [])]
        for sender in senders:
            keys.setdefault(sender.lower(), set()).add(login)
    return keys


def allowed(keys, login, sender):
    local, domain = sender.lower().split("@")
    candidates = [f"{local}@{domain}", f"{local.split('+', 1)[0]}@{domain}", f"@{domain}"]
    for key in candidates:
        if key in keys:
            return login in keys[key]
    return False
