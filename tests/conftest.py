"""Fixtures shared by the testinfra suite.

The suite runs unchanged under molecule and against a real inventory:
    pytest --hosts='ansible://submission' --ansible-inventory=inventory/production/hosts.yml tests/
Everything it needs to know about a deployment comes from the inventory's
variables (see inventory/production/README.md): the domain, the listeners and
the verification accounts. SMTP sessions run on the host under test itself,
with tests/smtp_probe.py and the host's Python, so no port has to be reachable
from the machine that runs pytest.
"""

import pytest
import testinfra
from deployment import Deployment
from host_probe import HostSecrets, Probe


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """With pytest-xdist's --dist loadscope, the scope is the host: the hosts are
    verified side by side, each host's tests one after another in file order,
    so that no test meets another's traffic, restart or rate limit on its host."""
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling  # noqa: PLC0415 (only with xdist)

    hosts = config.option.hosts.split(",") if config.option.hosts else [None]
    host_ids = [
        h.backend.get_pytest_id()
        for h in testinfra.get_hosts(
            hosts,
            connection=config.option.connection,
            ansible_inventory=config.option.ansible_inventory,
            force_ansible=config.option.force_ansible,
        )
    ]
    # Longest first: a host named like another plus a suffix is matched whole.
    host_ids.sort(key=len, reverse=True)

    class OneWorkerPerHost(LoadScopeScheduling):
        def _split_scope(self, nodeid):
            # testinfra's host id is the first parameter: test[ansible://host] or test[ansible://host-param].
            params = nodeid[nodeid.find("[") + 1 : -1] if nodeid.endswith("]") else ""
            return next((h for h in host_ids if params == h or params.startswith(h + "-")), nodeid)

    return OneWorkerPerHost(config, log)


def pytest_collection_modifyitems(items):
    """The tests that stop or restart the fleet's database last, in their order:
    after a restart, Postfix's pgsql client waits up to a minute before it
    tries the database again, and no other test should meet that."""
    items.sort(key=lambda item: item.get_closest_marker("database_outage") is not None)


@pytest.fixture(scope="module")
def deployment(host):
    return Deployment(host.ansible.get_variables())


@pytest.fixture(scope="module")
def host_secrets(host, deployment, request):
    """The verification passwords on the host, in a file only its user reads (HostSecrets)."""
    return HostSecrets.of(host, deployment.verification_accounts, request.config)


@pytest.fixture(scope="module")
def probe(host, host_secrets):
    return Probe(host, host_secrets)


@pytest.fixture(scope="module")
def sink(deployment):
    """The test sink's Maildir, for tests that send many messages or strange ones."""
    if not deployment.sink_maildir:
        pytest.skip("submission_verify_sink_maildir is not set: this deployment relays to the Internet")
    return deployment.sink_maildir


@pytest.fixture(scope="module")
def accounts(host):
    """The inventory's accounts (submission_accounts), as the allowlist role reads them."""
    variables = host.ansible.get_variables()
    if "submission_accounts" not in variables:
        raise pytest.UsageError("the inventory lacks submission_accounts")
    return variables["submission_accounts"]
