"""Typed access to environment variables for the settings modules.

Every reader raises ``ImproperlyConfigured`` naming the variable and what it
expects, so a bad deploy stops at start-up with a message an operator can act on.
"""

import ipaddress
import math
import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured
from dotenv import load_dotenv

REQUIRED = object()

# The developer's own variables, git-ignored; see read_dotenv().
DOTENV = Path(__file__).resolve().parent.parent / ".env"

_BOOLEANS = dict.fromkeys(("1", "true", "yes", "on"), True) | dict.fromkeys(
    ("0", "false", "no", "off"), False
)


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


def _read(name, default, expected, convert):
    """Return ``convert(value)`` of the variable, or ``default`` when it is unset or empty.

    ``convert`` raises ``ValueError`` (or ``KeyError``) for a value that is not what
    ``expected`` says.
    """
    value = _raw(name, default, expected)
    if value is None:
        return default
    try:
        return convert(value)
    except (KeyError, ValueError):
        raise invalid(name, value, expected) from None


def _at_least(minimum):
    def check(number):
        if not minimum <= number < math.inf:  # also refuses NaN
            raise ValueError(number)
        return number

    return check


def boolean(name, default=REQUIRED):
    """Return the variable as a bool (true/false, yes/no, on/off, 1/0)."""
    return _read(name, default, "true or false", lambda value: _BOOLEANS[value.lower()])


def integer(name, default=REQUIRED, *, minimum=0):
    """Return the variable as an int no smaller than ``minimum``."""
    at_least = _at_least(minimum)
    return _read(name, default, f"a whole number >= {minimum}", lambda value: at_least(int(value)))


def seconds(name, default=REQUIRED, *, minimum=0.0):
    """Return the variable as a duration in seconds (a float no smaller than ``minimum``)."""
    at_least = _at_least(minimum)
    expected = f"a number of seconds >= {minimum:g}"
    return _read(name, default, expected, lambda value: at_least(float(value)))


def choice(name, default, choices):
    """Return the variable, which must be one of ``choices``."""
    expected = "one of " + ", ".join(choices)
    return _read(name, default, expected, lambda value: choices[choices.index(value)])


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
    return _read(name, list(default), expected, _networks)


def _networks(value):
    return [ipaddress.ip_network(item.strip()) for item in value.split(",") if item.strip()]
