"""WAL positions: how the primary's position after a write is asked for, read and written.

A position is an integer, the byte offset in the WAL; PostgreSQL writes it as ``'16/B374D848'``.
"""

# The primary's position after a unit of work's writes have committed: the insert position,
# since with synchronous_commit off a commit returns before its WAL is written.
POSITION_SQL = "SELECT pg_current_wal_insert_lsn()::text"

# pg_current_wal_insert_lsn() reports a write that ended a WAL page as the start of the
# next page's first record, past the page header; a replica's replay position stops
# before that header. A record cannot end just after a header, so these are page starts.
WAL_PAGE = 8192
PAGE_HEADERS = (24, 40)  # short, and long (the first page of a segment)


def parse(text):
    """Return WAL position ``'16/B374D848'`` as an integer (``None`` for ``None``).

    Raises ``ValueError`` for anything else.
    """
    if text is None:
        return None
    high, slash, low = text.partition("/")
    if not slash:
        raise ValueError(f"not a WAL position: {text!r}")
    return (int(high, 16) << 32) + int(low, 16)


def format(position):
    """Return ``position`` written as PostgreSQL writes it, ``'16/B374D848'``."""
    return f"{position >> 32:X}/{position & 0xFFFFFFFF:X}"


def written(position):
    """Return the end of the last record written, given the primary's insert position."""
    if position is not None and position % WAL_PAGE in PAGE_HEADERS:
        return position - position % WAL_PAGE
    return position
