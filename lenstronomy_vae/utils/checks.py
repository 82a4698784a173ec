"""Checks of user-given arguments, with messages that name the argument and the value."""

import numpy as np


def checked_range(name, value, low=None, high=None):
    """``value`` as a (min, max) tuple of floats, checked against the allowed bounds."""
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be two numbers (min, max), got {value!r}") from None
    if lo > hi or (low is not None and lo < low) or (high is not None and hi > high):
        bounds = f" within [{low}, {high}]" if high is not None else (f" with min >= {low}" if low is not None else "")
        raise ValueError(f"{name} must be (min, max) with min <= max{bounds}, got {value!r}")
    return (lo, hi)


def check_count(name, value):
    """Raise ValueError unless ``value`` is a positive integer (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def check_positive(name, value):
    """Raise ValueError unless ``value`` is a finite positive real number (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")


def check_seed(seed):
    """Raise ValueError unless ``seed`` is a non-negative integer (not a bool)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")


def check_finite(name, array, axes):
    """Raise ValueError naming the count and first position of NaN or infinite values in ``array``.

    Args:
        name: what the array is, e.g. ``"image"``.
        array: numpy array.
        axes: names of its axes for the message, e.g. ``"row, column, band"``.
    """
    bad = ~np.isfinite(array)
    if bad.any():
        raise ValueError(f"{name}: {int(bad.sum())} NaN or infinite pixel(s), first at ({axes}) "
                         f"{tuple(int(i) for i in np.argwhere(bad)[0])}")
