"""A relay between Postfix's smtpd and Dovecot's auth service that keeps a temporary failure temporary."""
