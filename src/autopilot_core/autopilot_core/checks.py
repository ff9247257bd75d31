"""Checks on values that come from outside (messages, service requests, files): plain Python, no ROS.

Each returns the value when it is usable and raises :class:`InputError` otherwise, with a message that
names the field, the value (shortened) and what is allowed. :mod:`autopilot_core.guard` turns these
errors into refusals that a node logs, counts and answers with.
"""

from __future__ import annotations

import math
from collections.abc import Sized

#: Strings and sequences longer than these are refused unless a caller allows more.
MAX_TEXT = 4096
MAX_ITEMS = 10_000


class InputError(ValueError):
    """An input that cannot be used; the message names the field, the value and what is allowed."""


def short(value: object, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else f'{text[:limit]}... ({len(text)} chars)'


def finite(name: str, value: float, lo: float = -math.inf, hi: float = math.inf) -> float:
    """``value`` when it is a finite number in [lo, hi]; InputError naming ``name`` otherwise."""
    try:
        v = float(value)
    except (TypeError, ValueError, OverflowError):
        raise InputError(f'{name} must be a number (got {short(value)})') from None
    if not math.isfinite(v):
        raise InputError(f'{name} must be finite (got {v})')
    if not lo <= v <= hi:
        raise InputError(f'{name} must be in [{lo:g}, {hi:g}] (got {v:g})')
    return v


def text(name: str, value: str, max_len: int = MAX_TEXT, *, empty: bool = True) -> str:
    """``value`` when it is a string of at most ``max_len`` characters (and not empty unless allowed)."""
    if not isinstance(value, str):
        raise InputError(f'{name} must be text (got {type(value).__name__})')
    if len(value) > max_len:
        raise InputError(f'{name} is {len(value)} characters long; at most {max_len} are accepted')
    if not empty and not value:
        raise InputError(f'{name} must not be empty')
    return value


def sequence(name: str, value: Sized, max_len: int = MAX_ITEMS) -> Sized:
    """``value`` when it holds at most ``max_len`` items."""
    if len(value) > max_len:
        raise InputError(f'{name} has {len(value)} items; at most {max_len} are accepted')
    return value


