# Copyright: smtp-submission developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # How the modules look records up (module_utils/dns_lookup.py).
    DOCUMENTATION = r"""
options:
  dns_timeout:
    description: Seconds a record lookup may take.
    type: float
    default: 5
  nameservers:
    description: Addresses of the nameservers to ask instead of the host's resolver.
    type: list
    elements: str
  port:
    description: Their port.
    type: int
    default: 53
"""
