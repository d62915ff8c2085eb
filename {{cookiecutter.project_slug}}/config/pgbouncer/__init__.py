"""Connecting through PgBouncer in transaction pooling mode.

PgBouncer hands each transaction to whichever server connection is free, so the
application's connection may carry no session state: no startup ``options``, no
``assume_role``, no prepared statements and no cursor that outlives its transaction.
``default`` goes through PgBouncer; ``direct`` reaches the primary itself, for
``migrate``, ``dbshell`` and anything else that needs a session. See docs/pgbouncer.md.
"""
