# Copyright: smtp-submission developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters that shape the roles' data with the collection's own rules."""

from __future__ import annotations

DOCUMENTATION = r"""
name: submission
short_description: Data shaping for the submission roles
description:
  - C(listener_hostname), C(listener_hostnames), C(listener_hostname_map) and C(chain_files) derive host names and
    certificate chain paths from C(submission_common_listeners).
  - C(allowlist_account_entries) and C(allowlist_validated_entries) turn accounts into entries for
    M(mailops.submission.sender_allowlist).
  - C(certificate_matches) picks, for every service name and key type, the first supplied certificate that covers
    the name (wildcards for one label included).
  - C(hosted_domains) gives the provider's domains (the primary one, the accounts' own and the ones they own).
  - C(identity_problems) lists broken identity invariants of the accounts (an C(@domain) alias or external sender,
    the primary domain or another account's domain owned, an address with two owners unless shared, an external or
    validated address inside the provider's domains), each naming the account and the key.
  - C(account_problems) lists what is wrong with each account, named by address only, never by its secrets.
  - C(users_file_lines) gives the lines of Dovecot's users file for the accounts (a canonical line each, and one for
    the bare login of a primary-domain address).
  - C(credential_changes) gives the canonical logins of a users file whose password the accounts change or drop.
  - C(store_query) gives the query Postfix's sqlite or pgsql table makes in the validated-senders store.
  - C(served_listeners) gives each listener's host name, ports and TLS mode, as a mail client needs them.
  - C(lmdb_table_files) gives the files of C(lmdb:/path) tables, for the header-From milter, which reads them itself;
    a table of another type is an error that names it.
  - C(exemption_problems) lists the entries of an abuse-control exemption list that are not IP networks or are wider
    than a /8 (IPv4) or a /16 (IPv6), 0.0.0.0/0 and ::/0 included, each naming the entry.
  - C(limit_table) gives the milter's table of per-login message and recipient limits an hour and a day (the
    defaults for every login, or a login's own limits); a bad limit or login is an error that names it.
  - C(host_networks) turns host addresses into one-address networks (C(/32), C(/128)); an entry that is not an
    address (a host without facts) is an error that names it.
  - C(fleet_account_entries) turns accounts into entries for M(mailops.submission.fleet_accounts).
  - C(sender_logins_query) gives the fleet database's sender-login query (C(postfix) for a pgsql table file,
    C(pyformat) for a DB-API call); C(password_query) gives Dovecot's passdb sql query for a configuration series
    (C(2.3) or C(2.4)).
  - C(fleet_database_settings) checks C(submission_fleet_database) and fills in its defaults (an empty mapping
    means no fleet). C(fleet_conninfo) gives a client's libpq connection string, C(fleet_uri) a C(postgresql://)
    URI for Postfix and C(fleet_parameters) the parameters as a mapping, each with C(sslmode=verify-full) and a
    passfile; C(pgpass_line) gives that passfile's line. C(fleet_counter_store) gives the limits file's counter
    store for an MTA of the fleet (the database host's Redis over TLS, C(counter_port), the MTA's client
    certificate and key, a user and its password file).
  - C(listener_problems) lists what is wrong with the listeners (name, IP address, ports, an address and port bound
    twice), each naming the listener and the value.
author: smtp-submission developers
"""

from ansible.errors import AnsibleFilterError
from ansible_collections.mailops.submission.plugins.module_utils.account_rules import (
    account_problems,
    allowlist_account_entries,
    allowlist_validated_entries,
    credential_changes,
    hosted_domains,
    identity_problems,
    users_file_lines,
)
from ansible_collections.mailops.submission.plugins.module_utils.certificate_names import certificate_matches
from ansible_collections.mailops.submission.plugins.module_utils.client_networks import (
    exemption_problems,
    host_networks,
)
from ansible_collections.mailops.submission.plugins.module_utils.fleet_accounts import fleet_account_entries
from ansible_collections.mailops.submission.plugins.module_utils.fleet_database import (
    fleet_conninfo,
    fleet_counter_store,
    fleet_database_settings,
    fleet_parameters,
    fleet_uri,
    pgpass_line,
)
from ansible_collections.mailops.submission.plugins.module_utils.fleet_schema import (
    password_query,
    sender_logins_query,
)
from ansible_collections.mailops.submission.plugins.module_utils.listeners import (
    chain_files,
    listener_hostname,
    listener_hostname_map,
    listener_hostnames,
    listener_problems,
    served_listeners,
)
from ansible_collections.mailops.submission.plugins.module_utils.login_limits import limit_table
from ansible_collections.mailops.submission.plugins.module_utils.sender_lookup import lmdb_table_files
from ansible_collections.mailops.submission.plugins.module_utils.validated_store import store_query


def _checked(function):
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except (KeyError, TypeError, AttributeError, ValueError) as exc:  # LimitError is a ValueError
            raise AnsibleFilterError(f"{function.__name__}: {type(exc).__name__}: {exc}") from exc

    wrapper.__name__ = function.__name__
    wrapper.__doc__ = function.__doc__
    return wrapper


class FilterModule:
    def filters(self):
        return {
            function.__name__: _checked(function)
            for function in (
                listener_hostname,
                listener_hostnames,
                listener_hostname_map,
                listener_problems,
                served_listeners,
                store_query,
                lmdb_table_files,
                chain_files,
                allowlist_account_entries,
                allowlist_validated_entries,
                account_problems,
                hosted_domains,
                identity_problems,
                users_file_lines,
                credential_changes,
                certificate_matches,
                exemption_problems,
                limit_table,
                host_networks,
                fleet_account_entries,
                sender_logins_query,
                password_query,
                fleet_database_settings,
                fleet_conninfo,
                fleet_counter_store,
                fleet_parameters,
                fleet_uri,
                pgpass_line,
            )
        }
