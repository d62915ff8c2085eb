"""PgBouncer's ``userlist.txt``: SCRAM-SHA-256 secrets computed by libpq."""


def scram_secret(pgconn, user, password):
    """Return the SCRAM-SHA-256 secret of ``password`` as PostgreSQL stores it.

    libpq computes it (SASLprep included) on an open connection ``pgconn``, with the
    iteration count that server uses.
    """
    secret = pgconn.encrypt_password(password.encode(), user.encode(), b"scram-sha-256")
    return secret.decode()


def userlist_line(user, secret):
    """Return one ``userlist.txt`` line; PgBouncer doubles quotes inside quoted fields."""

    def quote(value):
        return '"' + value.replace('"', '""') + '"'

    return f"{quote(user)} {quote(secret)}"
