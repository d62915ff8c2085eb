"""Pin state: where the current thread or asyncio task may read from.

The state lives in :mod:`contextvars`, so it belongs to one thread or one asyncio task
and is never shared with another. A context is *pinned* to the primary while
``use_primary()`` is active and for the rest of a unit of work that wrote. A request
from a client that wrote recently carries the primary's WAL position after that write
(see :mod:`~config.replicas.middleware`): its reads may go to a replica only once the
replica has replayed that far.
"""

import contextlib
import functools
from contextvars import ContextVar

from asgiref.sync import iscoroutinefunction

# True while reads must go to the primary: use_primary(). Set with a token and reset
# with it, so nested scopes restore the outer value.
_reads_pinned = ContextVar("reads_pinned", default=False)
# How far the context went on the primary: nothing, ROUTED (Django routed a query for writing:
# a write, a lock, a validation query), or CHANGED (a statement changed data). Both send the
# rest of the context's reads to the primary; only CHANGED asks for a pin cookie. Kept apart
# from _reads_pinned so that leaving a use_primary() block cannot unpin a context that wrote.
_primary = ContextVar("primary", default=0)
ROUTED, CHANGED = 1, 2
# The WAL position a replica must have replayed to serve this context, or None.
_position = ContextVar("position", default=None)


def pinned():
    """Return True when reads in the current context must go to the primary."""
    return _reads_pinned.get() or _primary.get() > 0


def wrote():
    """Return True when a statement of the current context changed data on the primary."""
    return _primary.get() == CHANGED


def required_position():
    """Return the WAL position a replica must have replayed to serve this context."""
    return _position.get()


def routed_to_primary():
    """Record that Django routed a query to the primary for writing: the rest of the
    current context reads from the primary, but nothing asks for a pin cookie yet."""
    if not _primary.get():  # setting only once keeps the routing path free of churn
        _primary.set(ROUTED)


def mark_written():
    """Record a change of data: the rest of the current context reads from the primary,
    and its response pins the client (``config.replicas.middleware``)."""
    if _primary.get() != CHANGED:
        _primary.set(CHANGED)


# The first word of the command tags of statements that change no data: reads, Django's
# savepoints, and session control. Anything else on a primary is a write, BEGIN and COMMIT
# included: a script of several statements shows its first one's tag, and may be a transaction.
READ_TAGS = frozenset(
    "SELECT SHOW EXPLAIN SAVEPOINT RELEASE ROLLBACK SET RESET LOCK DECLARE FETCH MOVE CLOSE "  # noqa: SIM905
    "LISTEN UNLISTEN".split()
)


def note_writes(execute, sql, params, many, context):
    """Mark the context written after any statement on a primary that changed data.

    An execute wrapper on the primary's connections (``config.replicas.apps``): raw SQL on
    ``django.db.connection`` or ``.using("default").update()`` write without the router's
    knowledge, and a query Django routed for writing may only lock or validate. The server's
    command tag says what the statement did; a ``SELECT`` that writes through a function
    looks like a read, so call :func:`mark_written` after one.
    """
    result = execute(sql, params, many, context)
    status = context["cursor"].cursor.statusmessage or ""
    if status.partition(" ")[0] not in READ_TAGS:
        mark_written()
    return result


def pin_reads():
    """Pin the current context's reads to the primary; return a token for unpin_reads."""
    return _reads_pinned.set(True)


def unpin_reads(token):
    """Restore the pin state that was current before the matching ``pin_reads()``."""
    _reads_pinned.reset(token)


def begin_unit_of_work(*, position=None):
    """Start a fresh pin state (a request, a task); return the token for end_unit_of_work.

    ``position`` is the WAL position the unit of work must see (``None``: any replica
    that is not lagging will do). Threads are reused from one request to the next and a
    context outlives the request it served, so every unit of work must start unpinned
    and restore what it found.
    """
    return _reads_pinned.set(False), _primary.set(0), _position.set(position)


def end_unit_of_work(tokens):
    """Restore the pin state saved by :func:`begin_unit_of_work`."""
    pinned_token, primary_token, position_token = tokens
    _position.reset(position_token)
    _primary.reset(primary_token)
    _reads_pinned.reset(pinned_token)


def snapshot():
    """Return the current pin state, for :func:`restored`."""
    return _reads_pinned.get(), _primary.get(), _position.get()


@contextlib.contextmanager
def restored(state):
    """Run the block with the pin state ``state``, then put back the current one."""
    tokens = _reads_pinned.set(state[0]), _primary.set(state[1]), _position.set(state[2])
    try:
        yield
    finally:
        end_unit_of_work(tokens)


def use_primary(func=None):
    """Send every read in a block, or in a function, to the primary.

    Use it as a context manager or as a decorator, on plain and async functions alike::

        with use_primary():
            order = Order.objects.get(pk=pk)

        @use_primary
        def checkout(request): ...

    Blocks nest, and leaving one restores the state around it; a write inside a block
    still pins the rest of the request after the block ends. The state belongs to the
    current thread or asyncio task only.
    """
    if func is None:
        return UsePrimary()
    return UsePrimary()(func)


class UsePrimary:
    """The context manager and decorator returned by :func:`use_primary`."""

    def __init__(self):
        self._tokens = []  # a stack, so one instance can be re-entered

    def __enter__(self):
        self._tokens.append(pin_reads())
        return self

    def __exit__(self, exc_type, exc_value, traceback):
        unpin_reads(self._tokens.pop())

    async def __aenter__(self):
        return self.__enter__()

    async def __aexit__(self, exc_type, exc_value, traceback):
        self.__exit__(exc_type, exc_value, traceback)

    def __call__(self, func):
        # A fresh instance per call: concurrent calls must not share a token stack.
        if iscoroutinefunction(func):

            @functools.wraps(func)
            async def inner(*args, **kwargs):
                with UsePrimary():
                    return await func(*args, **kwargs)

        else:

            @functools.wraps(func)
            def inner(*args, **kwargs):
                with UsePrimary():
                    return func(*args, **kwargs)

        return inner
