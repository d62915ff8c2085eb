"""Typed access to environment variables for the settings modules.

Every reader raises ``ImproperlyConfigured`` naming the variable and what it
expects, so a bad deploy stops at start-up with a message an operator can act on.
"""

import ipaddress
import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured
from dotenv import load_dotenv

REQUIRED = object()

# The developer's own variables, git-ignored; see read_dotenv().
DOTENV = Path(__file__).resolve().parent.parent / ".env"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _raw(name, default, expected):
    value = os.environ.get(name, "").strip()
    if value:
        return value
    if default is REQUIRED:
        raise ImproperlyConfigured(f"{name} is required: set it to {expected}.")
    return None


def read_dotenv():
    """Add the variables of ``DOTENV`` to the environment, when the file exists.

    A variable already set in the environment keeps its value. The local and test settings
    call this before anything reads the environment; staging and production never do: a
    deployed process is configured by its environment alone.
    """
    if DOTENV.is_file():
        load_dotenv(DOTENV, override=False)


def invalid(name, value, expected):
    """Return the error for a malformed variable (values are shown, so never pass secrets)."""
    return ImproperlyConfigured(f"{name}={value!r} is not valid: expected {expected}.")


def string(name, default=REQUIRED, *, expected="a non-empty string"):
    """Return the variable, or ``default`` when it is unset or empty."""
    value = _raw(name, default, expected)
    return default if value is None else value


def boolean(name, default=REQUIRED):
    """Return the variable as a bool (true/false, yes/no, on/off, 1/0)."""
    expected = "true or false"
    value = _raw(name, default, expected)
    if value is None:
        return default
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise invalid(name, value, expected)


def integer(name, default=REQUIRED, *, minimum=0):
    """Return the variable as an int no smaller than ``minimum``."""
    expected = f"a whole number >= {minimum}"
    value = _raw(name, default, expected)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise invalid(name, value, expected) from None
    if number < minimum:
        raise invalid(name, value, expected)
    return number


def seconds(name, default=REQUIRED, *, minimum=0.0):
    """Return the variable as a duration in seconds (a float no smaller than ``minimum``)."""
    expected = f"a number of seconds >= {minimum:g}"
    value = _raw(name, default, expected)
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        raise invalid(name, value, expected) from None
    if not number >= minimum or number == float("inf"):
        raise invalid(name, value, expected)
    return number


def choice(name, default, choices):
    """Return the variable, which must be one of ``choices``."""
    expected = "one of " + ", ".join(choices)
    value = _raw(name, default, expected)
    if value is None:
        return default
    if value not in choices:
        raise invalid(name, value, expected)
    return value


def strings(name, default=REQUIRED, *, expected="a comma-separated list"):
    """Return a comma-separated variable as a list, dropping empty items."""
    value = _raw(name, default, expected)
    if value is None:
        return list(default)
    items = [item.strip() for item in value.split(",") if item.strip()]
    if not items and default is REQUIRED:
        raise ImproperlyConfigured(f"{name} is required: set it to {expected}.")
    return items


def networks(name, default=()):
    """Return a comma-separated variable of CIDRs as a list of ``ipaddress`` networks.

    An address alone is a network of one; an item with host bits set (``10.0.0.3/8``) is
    refused: it is more likely a typo than the network meant.
    """
    expected = "comma-separated networks such as 10.0.0.0/8,fd00::/8"
    value = _raw(name, default, expected)
    if value is None:
        return list(default)
    try:
        return [ipaddress.ip_network(item.strip()) for item in value.split(",") if item.strip()]
    except ValueError:
        raise invalid(name, value, expected) from None
