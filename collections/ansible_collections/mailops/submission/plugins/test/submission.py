# Copyright: smtp-submission developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Tests with the collection's address rules, the ones the module enforces."""

from __future__ import annotations

DOCUMENTATION = r"""
name: submission
short_description: Address tests with the sender allowlist's own rules
description:
  - C(login_address) is true when the value is a SASL login that M(mailops.submission.sender_allowlist) accepts
    (local@domain, see its documentation).
  - C(sender_address) is true when the value is a sender key it accepts (local@domain or @domain).
author: smtp-submission developers
"""

from ansible_collections.mailops.submission.plugins.module_utils.sender_address import (
    AddressError,
    normalize_login,
    normalize_sender,
)


def _accepts(normalize):
    def test(value):
        try:
            normalize(value)
        except AddressError:
            return False
        return True

    return test


class TestModule:
    def tests(self):
        return {"login_address": _accepts(normalize_login), "sender_address": _accepts(normalize_sender)}
