# Copyright: smtp-submission developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet database's schema beyond the validation store's, and the queries the fleet's MTAs ask.

In fleet mode the accounts live in PostgreSQL beside the validation store
(validated_store.py's tables, unchanged): Dovecot checks passwords in
``accounts``, and Postfix and the header-From milter ask one view,
``sender_logins``, which holds every (sender key, login) pair the lmdb tables
hold on a single host: the account's address, its aliases, ``@domain`` for an
owned domain, and the validated external senders, with the single host's
rules (the map daemon's, sender_map.py): a validated sender is an address
(CHECK constraints, whoever writes), and one at a hosted domain (an owned
domain, or an account's own) is skipped; a domain that becomes hosted prunes
the users' validated rows there, in the same transaction (a trigger).

The view runs with its owner's rights, so Postfix's and the milter's database
roles read the pairs and never a password hash.

Pure Python, no Ansible import (nor has dns_name.py, which it imports): the
milter imports it unchanged.
"""

from __future__ import annotations

from ansible_collections.mailops.submission.plugins.module_utils.dns_name import (
    MAX_NAME_OCTETS,
    NAME_PATTERN,
    DnsNameError,
    dns_name,
)

# A validated sender's shape (sender_address.SENDER_RE with a local part, in
# PostgreSQL's regular expressions): part of migration 101, never edited; a new
# rule is a new migration (103: the domain by the one DNS-name rule).
SENDER_ADDRESS_RE = (
    r"^(?!#)[a-z0-9#$&'*+/=?^_`{|}~-]+(\.[a-z0-9#$&'*+/=?^_`{|}~-]+)*"
    r"@[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+$"
)
_SENDER_ADDRESS_SQL = SENDER_ADDRESS_RE.replace("'", "''")
# A validated sender's domain is a DNS name by dns_name.py's rule (its regular
# expression says the same of canonical text, and PostgreSQL's ARE reads it
# alike): migration 103's, frozen with it (test_fleet_rules.SHIPPED).
_VALIDATED_DOMAIN = "split_part(sender, '@', 2)"
_DOMAIN_IS_A_NAME = (
    f"{_VALIDATED_DOMAIN} ~ '^{NAME_PATTERN}$' AND octet_length({_VALIDATED_DOMAIN}) <= {MAX_NAME_OCTETS}"
)

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
    (
        # The single host's rules (sender_map.py): a validated sender is an
        # address, never @domain, and never one at a hosted domain (an owned
        # domain or an account's own), whose addresses are the accounts'.
        101,
        [
            "CREATE INDEX accounts_domain ON accounts ((split_part(login, '@', 2)))",
            "CREATE INDEX validated_senders_domain ON validated_senders ((split_part(sender, '@', 2)))",
            # Whether a domain is hosted: an owned domain or an account's own.
            # A function, not two more joins in the view, whose planning is most
            # of a lookup's cost (README "Cost and capacity"): PL/pgSQL keeps its
            # plans for the session. It runs as the owner, as the view does, so
            # that Postfix's and the milter's roles read no account; EXECUTE
            # stays with PUBLIC, which here is the services' roles (PUBLIC may
            # not connect), and it tells whether a domain is hosted, no more.
            """CREATE FUNCTION hosted_domain(domain_name TEXT) RETURNS BOOLEAN
                LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
                BEGIN
                    RETURN EXISTS (SELECT 1 FROM account_domains WHERE domain = domain_name)
                        OR EXISTS (SELECT 1 FROM accounts WHERE split_part(login, '@', 2) = domain_name);
                END
            $$""",
            # Rows the rules refuse, from before them: the shape, then users'
            # rows at hosted domains (the inventory's there are refused by its
            # identity checks, and skipped by the view).
            # This module's constant, no input.
            f"DELETE FROM validated_senders WHERE NOT sender ~ '{_SENDER_ADDRESS_SQL}'",  # noqa: S608
            "DELETE FROM validated_senders WHERE source = 'user' AND hosted_domain(split_part(sender, '@', 2))",
            # Whoever writes, the validation service's role included: an address
            # as sender_address.normalize_sender gives it, never @domain.
            "ALTER TABLE validated_senders ADD CONSTRAINT validated_senders_no_domain_key CHECK (sender NOT LIKE '@%')",
            f"""ALTER TABLE validated_senders ADD CONSTRAINT validated_senders_sender_is_an_address
                CHECK (sender ~ '{_SENDER_ADDRESS_SQL}' AND octet_length(split_part(sender, '@', 1)) <= 64
                       AND octet_length(split_part(sender, '@', 2)) <= 255)""",
            # The validated branch skips @domain rows and rows at hosted
            # domains, as the map daemon does.
            """CREATE OR REPLACE VIEW sender_logins (sender, login) AS
                SELECT login, login FROM accounts
                UNION ALL SELECT address, login FROM account_aliases
                UNION ALL SELECT '@' || domain, login FROM account_domains
                UNION ALL SELECT v.sender, v.login FROM validated_senders AS v
                    WHERE v.sender NOT LIKE '@%' AND NOT hosted_domain(split_part(v.sender, '@', 2))""",
            # A domain that becomes hosted (owned, or an account's own) takes its
            # addresses from the users who validated them, in the writer's
            # transaction, whoever writes: the fleet_accounts module or an
            # administrator's psql. The inventory's rows are the allowlist
            # module's. The function runs with the writer's rights: a role that
            # may add a domain but not delete validated senders fails, and adds
            # nothing.
            """CREATE FUNCTION prune_validated_at_hosted_domain() RETURNS trigger LANGUAGE plpgsql AS $$
                DECLARE
                    hosted TEXT;
                BEGIN
                    IF TG_TABLE_NAME = 'accounts' THEN
                        hosted := split_part(NEW.login, '@', 2);
                    ELSE
                        hosted := NEW.domain;
                    END IF;
                    DELETE FROM validated_senders WHERE source = 'user' AND split_part(sender, '@', 2) = hosted;
                    RETURN NULL;
                END
            $$""",
            "REVOKE ALL ON FUNCTION prune_validated_at_hosted_domain() FROM PUBLIC",
            """CREATE TRIGGER account_domains_prune_validated AFTER INSERT OR UPDATE OF domain ON account_domains
                FOR EACH ROW EXECUTE FUNCTION prune_validated_at_hosted_domain()""",
            """CREATE TRIGGER accounts_prune_validated AFTER INSERT OR UPDATE OF login ON accounts
                FOR EACH ROW EXECUTE FUNCTION prune_validated_at_hosted_domain()""",
        ],
    ),
    (
        # A changed password, or an account that goes, ends the login's web
        # sessions (the store's web_sessions) in the writer's transaction, as
        # the single host's play does (sender-validation-end-sessions). A user's
        # validated sender is never at a hosted domain nor holds an encoded
        # word, whoever writes it: refused, not only skipped by the view.
        102,
        [
            "DELETE FROM validated_senders WHERE position('=?' IN sender) > 0",
            """ALTER TABLE validated_senders ADD CONSTRAINT validated_senders_no_encoded_word
                CHECK (position('=?' IN sender) = 0)""",
            """CREATE FUNCTION refuse_validated_at_hosted_domain() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    IF NEW.source = 'user' AND hosted_domain(split_part(NEW.sender, '@', 2)) THEN
                        RAISE EXCEPTION 'validated_senders_not_at_hosted_domain: % is at a hosted domain', NEW.sender
                            USING ERRCODE = 'check_violation';
                    END IF;
                    RETURN NEW;
                END
            $$""",
            "REVOKE ALL ON FUNCTION refuse_validated_at_hosted_domain() FROM PUBLIC",
            """CREATE TRIGGER validated_senders_not_at_hosted_domain
                BEFORE INSERT OR UPDATE OF sender, source ON validated_senders
                FOR EACH ROW EXECUTE FUNCTION refuse_validated_at_hosted_domain()""",
            """CREATE FUNCTION end_web_sessions() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    DELETE FROM web_sessions WHERE login = OLD.login;
                    RETURN NULL;
                END
            $$""",
            "REVOKE ALL ON FUNCTION end_web_sessions() FROM PUBLIC",
            """CREATE TRIGGER accounts_password_ends_web_sessions AFTER UPDATE OF login, password_hash ON accounts
                FOR EACH ROW
                WHEN (OLD.login IS DISTINCT FROM NEW.login OR OLD.password_hash IS DISTINCT FROM NEW.password_hash)
                EXECUTE FUNCTION end_web_sessions()""",
            """CREATE TRIGGER accounts_removal_ends_web_sessions AFTER DELETE ON accounts
                FOR EACH ROW EXECUTE FUNCTION end_web_sessions()""",
        ],
    ),
    (
        # One DNS-name rule (dns_name.py): a validated sender's domain is at
        # most 253 octets and its last label is not all digits (an address,
        # not a name), whoever writes; rows from before the rule go, and the
        # requests that would confirm one.
        103,
        [
            f"DELETE FROM validated_senders WHERE NOT ({_DOMAIN_IS_A_NAME})",  # noqa: S608 (constants, no input)
            f"DELETE FROM validation_requests WHERE NOT ({_DOMAIN_IS_A_NAME})",  # noqa: S608 (constants, no input)
            f"""ALTER TABLE validated_senders ADD CONSTRAINT validated_senders_domain_is_a_name
                CHECK ({_DOMAIN_IS_A_NAME})""",
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


def sender_logins_query(style):
    """The sender-login lookup: for a Postfix pgsql_table(5) file ('postfix',
    the key as '%s') or a DB-API call with one parameter ('pyformat')."""
    return _SENDER_LOGINS.format(key={"postfix": "'%s'", "pyformat": "%s"}[style])


def password_query(primary_domain, dovecot_series):
    """Dovecot's passdb sql query for its configuration series ('2.3' or '2.4');
    primary_domain is the domain of bare logins (a DNS name, which the query holds
    in its canonical form: lower case, A-labels, as the accounts' logins hold it)."""
    try:
        domain = dns_name(primary_domain)
    except DnsNameError as exc:
        raise ValueError(f"{primary_domain!r} is not a domain name for bare logins: it {exc.reason}") from None
    return _DOVECOT_PASSDB_QUERY.format(user=DOVECOT_USER_VARIABLE[dovecot_series], domain=domain)
