# Copyright: smtp-submission developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # How the modules reach the fleet database (module_utils/database_connection.py).
    DOCUMENTATION = r"""
options:
  login_user:
    description: The role to connect to the fleet database as, over the local socket (peer authentication).
    type: str
    default: postgres
  login_unix_socket:
    description: The directory of the database server's local socket.
    type: path
    default: /var/run/postgresql
  port:
    description: The database server's port (part of the socket's name).
    type: int
    default: 5432
  session_role:
    description: The role to C(SET ROLE) to after connecting; what the run creates belongs to it.
    type: str
"""
