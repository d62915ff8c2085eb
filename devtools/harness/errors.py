"""The harness's errors."""


class HarnessError(RuntimeError):
    """A throwaway server could not be set up, started, stopped or queried."""


class PortTaken(HarnessError):
    """The server could not bind its port because something else grabbed it first."""
