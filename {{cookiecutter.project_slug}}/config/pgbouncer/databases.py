"""What makes the ``default`` alias safe for PgBouncer in transaction pooling mode."""

from django.core.exceptions import ImproperlyConfigured

# URL parameters that only work on a connection of one's own, and why.
SESSION_BOUND = {
    "options": "startup options are rejected by PgBouncer; set them on the role with "
    "ALTER ROLE ... SET instead",
    "assume_role": "SET ROLE would leak to whichever client gets the server connection next",
    "server_side_binding": "server-side binding prepares statements on one server "
    "connection and runs them on another",
    "prepare_threshold": "prepared statements break when the next transaction lands on "
    "another server connection",
}
CHANNEL_BINDING = (
    "PgBouncer cannot do SCRAM channel binding; use channel_binding=prefer or leave it out"
)


def session_bound_options(options):
    """Return ``(option, reason)`` for every entry of ``options`` that needs a session."""
    problems = [
        (option, reason)
        for option, reason in SESSION_BOUND.items()
        if options.get(option) not in (None, False)
    ]
    if options.get("channel_binding") == "require":
        problems.append(("channel_binding=require", CHANNEL_BINDING))
    return problems


def transaction_pooling(config, name="DATABASE_URL"):
    """Return ``config`` made safe for PgBouncer, refusing options that need a session."""
    for option, reason in session_bound_options(config.get("OPTIONS", {})):
        raise ImproperlyConfigured(f"{name} sets {option}: {reason}.")
    # Django's .iterator() outside atomic() opens a cursor WITH HOLD that must outlive its
    # transaction; the next transaction may run on another server connection.
    return {**config, "DISABLE_SERVER_SIDE_CURSORS": True}
