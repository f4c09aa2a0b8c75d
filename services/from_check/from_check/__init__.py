"""The header-From milter: a message's From must be an address its login may send as."""
