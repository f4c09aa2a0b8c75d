"""The lookup Postfix makes in the store (smtpd_sender_login_maps).

Postfix asks with the full sender, then without its +tag, then @domain; the
first key that answers decides. The answer is the logins, comma-separated, as
the lmdb tables give them. One query a backend: SQLite's group_concat,
PostgreSQL's string_agg, over the same table.
"""

SQLITE_QUERY = "SELECT group_concat(login, ',') FROM validated_senders WHERE sender = '%s'"
PGSQL_QUERY = "SELECT string_agg(login, ',' ORDER BY login) FROM validated_senders WHERE sender = '%s'"


def sqlite_map_config(db_path):
    """The text of a Postfix sqlite_table(5) file for the store at db_path."""
    return f"dbpath = {db_path}\nquery = {SQLITE_QUERY}\n"
