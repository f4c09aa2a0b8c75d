"""Ansible's linear strategy, run through Mitogen (mitogen.networkgenomics.com).

The default, fleet and acme scenarios converge with it (their molecule.yml
sets ANSIBLE_STRATEGY=mitogen_linear): Mitogen keeps one Python interpreter per
container and sends it each module, where Ansible starts ``docker exec`` and a
new interpreter for every task.  Measured on the 2-core test machine, 100 module runs
on two containers: 50 s with Ansible's docker connection, 7.5 s through Mitogen
(docs/testing.md).  The benchmark scenario converges under Ansible's own
strategy, so every CI run still deploys the roles the way a production run
without Mitogen does; scripts/test runs only its idempotence step through this.

Mitogen looks for its strategy in its package's directory; this file names it
on a path that does not depend on where the venv is.
"""

from __future__ import annotations

try:
    import ansible_mitogen.loaders
    import ansible_mitogen.strategy
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        "the mitogen_linear strategy needs the mitogen package "
        "(requirements-deploy.txt): pip install -r requirements-deploy.txt"
    ) from error

_Linear = ansible_mitogen.loaders.strategy_loader.get("linear", class_only=True)


class StrategyModule(ansible_mitogen.strategy.StrategyMixin, _Linear):
    """Ansible's linear strategy with Mitogen's connection handling.

    The plays against the instances go through Mitogen.  The docker driver's
    own plays on the controller (``connection: local``: create and destroy)
    keep Ansible's linear strategy: they start the containers as async jobs,
    which Mitogen's local transport started and never finished (measured:
    create waited its 300 retries).
    """

    def run(self, iterator, play_context):
        # The play's own connection keyword: play_context.connection is not
        # set from it yet when a strategy starts.
        if iterator._play.connection == "local":
            return _Linear.run(self, iterator, play_context)
        return super().run(iterator, play_context)
