"""The load benchmark's generated accounts, one rule for the inventory and the load.

Even numbers are users of the primary domain, who log in with the bare local
part; odd numbers each own a hosted domain of their own and log in as
user%domain. molecule/benchmark's inventory takes them through its filter
plugin, benchmarks/submission_load.py directly.
"""


def load_accounts(count, domain):
    """[{address, login, domains}] for the benchmark's `count` accounts."""
    accounts = []
    for n in range(count):
        if n % 2 == 0:
            accounts.append({"address": f"load{n:03d}@{domain}", "login": f"load{n:03d}", "domains": []})
        else:
            hosted = f"load{n:03d}.example"
            accounts.append({"address": f"load{n:03d}@{hosted}", "login": f"load{n:03d}%{hosted}", "domains": [hosted]})
    return accounts
