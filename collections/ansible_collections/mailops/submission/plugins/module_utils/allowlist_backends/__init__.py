# Copyright: smtp-submission developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The places the sender_allowlist module keeps its pairs, one backend a file.

- ``common``: the request and result every backend shares, the backend
  protocol (session, plan, apply, result).
- ``stores``: what the two stores share (their rows' request and planning).
- ``table_file``: a Postfix table, its source file and compiled map (``path``).
- ``sqlite_store``: the validation service's SQLite store (``store``).
- ``postgresql``: the fleet's PostgreSQL database (``database``).

The module selects one by the option given and imports only that one;
nothing here picks a backend itself.
"""
