"""submission_common's checks, run for real with ansible-playbook: the first
tasks of every play, before any role writes a file."""

import pytest


def run_common(run_play, play_vars):
    return run_play(play_vars, {"roles": ["submission_common"]}, callback="ansible.builtin.default")


def test_a_good_domain_passes(run_play):
    rc, out = run_common(run_play, {"submission_domain": "runbox.com"})
    assert rc == 0, out[-2000:]


@pytest.mark.parametrize("domain", ["1.2.3.4", "runbox.com.", "-runbox.com", ""])
def test_a_domain_that_is_not_a_name_stops_the_play_naming_it(run_play, domain):
    rc, out = run_common(run_play, {"submission_domain": domain})
    assert rc == 2, out[-2000:]
    assert f'submission_domain is not a domain name: "{domain}"' in out, out[-2000:]


def test_a_missing_domain_stops_the_play_naming_it(run_play):
    """Ansible itself stops at the argument check, which reads the defaults
    derived from the domain."""
    rc, out = run_common(run_play, {})
    assert rc == 2, out[-2000:]
    assert "'submission_domain' is undefined" in out, out[-2000:]


def test_an_inventory_that_still_sets_a_retired_variable_stops_naming_its_successor(run_play):
    """An old inventory's listeners would otherwise be ignored: Postfix would
    listen on loopback only and the play would succeed."""
    listeners = [{"name": "smtp", "address": "192.0.2.10", "ports": [587]}]
    rc, out = run_common(
        run_play,
        {"submission_domain": "runbox.com", "submission_mta_listeners": listeners, "submission_tls_dir": "/x"},
    )
    assert rc == 2, out[-2000:]
    assert "submission_mta_listeners is now submission_common_listeners" in out, out[-2000:]
    assert "submission_tls_dir is now submission_common_tls_dir" in out, out[-2000:]
