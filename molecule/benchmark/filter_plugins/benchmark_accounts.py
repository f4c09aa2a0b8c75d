"""benchmark_accounts: the load benchmark's accounts (benchmarks/load_accounts.py) as inventory accounts."""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[3] / "benchmarks"))
from load_accounts import load_accounts


def benchmark_accounts(count, domain, password_hash):
    """submission_accounts entries: {address, password_hash, domains} (domains only where owned)."""
    return [
        {"address": account["address"], "password_hash": password_hash}
        | ({"domains": account["domains"]} if account["domains"] else {})
        for account in load_accounts(int(count), domain)
    ]


class FilterModule:
    def filters(self):
        return {"benchmark_accounts": benchmark_accounts}
