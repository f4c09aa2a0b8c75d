# Copyright: smtp-submission developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet database's schema beyond the validation store's, and the queries the fleet's MTAs ask.

In fleet mode the accounts live in PostgreSQL beside the validation store
(validated_store.py's tables, unchanged): Dovecot checks passwords in
``accounts``, and Postfix and the header-From milter ask one view,
``sender_logins``, which holds every (sender key, login) pair the lmdb tables
hold on a single host: the account's address, its aliases, ``@domain`` for an
owned domain, and the validated external senders.

The view runs with its owner's rights, so Postfix's and the milter's database
roles read the pairs and never a password hash.

Pure Python, no Ansible import: the milter imports it unchanged.
"""

from __future__ import annotations

import re

# Versions above the validation store's (validated_store.MIGRATIONS, 1..99),
# in the same schema_version table. Append; never edit one that has shipped.
MIGRATIONS = [
    (
        100,
        [
            """CREATE TABLE accounts (
                login TEXT PRIMARY KEY,
                password_hash TEXT NOT NULL
            )""",
            # An address more than one account may send as (a shared sales@) has a row per login.
            """CREATE TABLE account_aliases (
                address TEXT NOT NULL,
                login TEXT NOT NULL REFERENCES accounts (login) ON DELETE CASCADE,
                PRIMARY KEY (address, login)
            )""",
            "CREATE INDEX account_aliases_login ON account_aliases (login)",
            # A hosted domain has one owner.
            """CREATE TABLE account_domains (
                domain TEXT PRIMARY KEY,
                login TEXT NOT NULL REFERENCES accounts (login) ON DELETE CASCADE
            )""",
            "CREATE INDEX account_domains_key ON account_domains (('@' || domain))",
            "CREATE INDEX account_domains_login ON account_domains (login)",
            "CREATE INDEX validated_senders_login ON validated_senders (login)",
            # UNION ALL keeps each branch's index: PostgreSQL pushes the sender
            # condition into every branch.
            """CREATE VIEW sender_logins (sender, login) AS
                SELECT login, login FROM accounts
                UNION ALL SELECT address, login FROM account_aliases
                UNION ALL SELECT '@' || domain, login FROM account_domains
                UNION ALL SELECT sender, login FROM validated_senders""",
        ],
    ),
]

# The logins that may send as a key; several rows join with commas, as
# Postfix's pgsql client joins them.
_SENDER_LOGINS = "SELECT DISTINCT login FROM sender_logins WHERE sender = {key}"

# Dovecot's password lookup, with the passwd-file's rules: Dovecot has already
# turned user%domain into user@domain and lower-cased it; a bare login is the
# primary domain's; the answer's user field is the canonical login, which
# Postfix logs as sasl_username; a hash without a {SCHEME} prefix is crypt(3).
_DOVECOT_PASSDB_QUERY = (
    "SELECT login AS user,"
    " CASE WHEN left(password_hash, 1) = '{{' THEN password_hash ELSE '{{CRYPT}}' || password_hash END AS password"
    " FROM accounts"
    " WHERE login = CASE WHEN strpos('{user}', '@') = 0 THEN '{user}@{domain}' ELSE '{user}' END"
)
DOVECOT_USER_VARIABLE = {"2.3": "%u", "2.4": "%{user}"}
_DOMAIN_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)+")


def sender_logins_query(style):
    """The sender-login lookup: for a Postfix pgsql_table(5) file ('postfix',
    the key as '%s') or a DB-API call with one parameter ('pyformat')."""
    return _SENDER_LOGINS.format(key={"postfix": "'%s'", "pyformat": "%s"}[style])


def password_query(primary_domain, dovecot_series):
    """Dovecot's passdb sql query for its configuration series ('2.3' or '2.4');
    primary_domain is the domain of bare logins (an A-label domain name)."""
    domain = str(primary_domain).lower()
    if not _DOMAIN_RE.fullmatch(domain):
        raise ValueError(f"{primary_domain!r} is not a domain name (in A-labels) for bare logins")
    return _DOVECOT_PASSDB_QUERY.format(user=DOVECOT_USER_VARIABLE[dovecot_series], domain=domain)
