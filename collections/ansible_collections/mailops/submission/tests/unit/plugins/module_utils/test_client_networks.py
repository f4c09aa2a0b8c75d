import pytest
from ansible_collections.mailops.submission.plugins.module_utils.client_networks import exemption_problems


def test_gateways_and_monitoring_hosts_may_be_exempt():
    assert exemption_problems(["192.0.2.10", "198.51.100.0/24", "10.0.0.0/8", "2001:db8::/32", "::1"]) == []


@pytest.mark.parametrize("entry", ["0.0.0.0/0", "::/0", "128.0.0.0/1", "10.0.0.0/7", "2000::/3"])
def test_networks_wider_than_a_slash_8_or_16_are_refused_by_name(entry):
    problems = exemption_problems(["192.0.2.10", entry])
    assert len(problems) == 1 and problems[0].startswith(f"{entry} is wider than"), problems


@pytest.mark.parametrize("entry", ["smtp.example.net", "192.0.2.300", "10.0.0.0/33", ""])
def test_what_is_not_a_network_is_named(entry):
    assert exemption_problems([entry]) == [f"{entry!r} is not an IP address or network (address/prefix)"]
