"""Stamps cut out of a scene and pasted back, zero-padded where they leave it.

Pixel coordinates follow ``sep``: ``x`` is the column and ``y`` the row, 0-indexed, with pixel
centres at integers. The overlap of a stamp and a scene is astropy's
(:func:`astropy.nddata.utils.overlap_slices`); the stamp's corner is fixed here, rounding a
centre halfway between pixels up.
"""

import math

import numpy as np
from astropy.nddata.utils import NoOverlapError, overlap_slices

from lenstronomy_vae.utils.checks import check_count

_EMPTY = (slice(0, 0), slice(0, 0))


def checked_position(name, x, y):
    """(x, y) as floats, checked finite."""
    x, y = float(x), float(y)
    if not (math.isfinite(x) and math.isfinite(y)):
        raise ValueError(f"{name} must be finite pixel coordinates, got ({x}, {y})")
    return x, y


def _overlap(large_shape, small_shape, row0, col0):
    """Slices (large, small) of the part of a small array with top-left pixel (row0, col0) inside a large one."""
    # overlap_slices centres the small array; this centre puts its first pixel at (row0, col0), odd or even sizes.
    centre = (row0 + small_shape[0] // 2, col0 + small_shape[1] // 2)
    try:
        return overlap_slices(large_shape[:2], small_shape[:2], centre, mode="partial")
    except NoOverlapError:
        return _EMPTY, _EMPTY


def cutout(image, x, y, size):
    """Cut a square stamp centred on the pixel nearest to (x, y), zero-padded beyond the image.

    Args:
        image: (H, W, ...) array, e.g. a (H, W, bands) scene [electrons].
        x: column of the centre [pixels], sep's convention; rounded to the nearest pixel
            (halves up).
        y: row of the centre [pixels], rounded likewise.
        size: side of the stamp [pixels]; odd, so the centre pixel is the stamp's middle one.

    Returns:
        (stamp, (row0, col0)): the (size, size, ...) stamp, a copy with zeros where it leaves
        the image, and the image row and column of its top-left pixel (negative if the stamp
        starts before the image). ``paste(canvas, stamp, row0, col0)`` puts it back.

    Raises:
        ValueError: if ``size`` is not a positive odd integer or (x, y) is not finite.
    """
    check_count("size", size)
    if size % 2 == 0:
        raise ValueError(f"size must be odd so the stamp has a centre pixel, got {size}")
    x, y = checked_position("(x, y)", x, y)
    image = np.asarray(image)
    if image.ndim < 2:
        raise ValueError(f"image must have at least 2 dimensions (H, W, ...), got shape {image.shape}")
    row0, col0 = math.floor(y + 0.5) - size // 2, math.floor(x + 0.5) - size // 2
    return cutout_at(image, row0, col0, size), (row0, col0)


def on_image(shape, row0, col0, size):
    """(size, size, 1) float mask of the stamp at (row0, col0): 1 on the pixels of an image of ``shape``, 0 beyond."""
    mask = np.zeros((size, size, 1))
    _, stamp_slices = _overlap(tuple(shape[:2]) + (1,), mask.shape, row0, col0)
    mask[stamp_slices] = 1.0
    return mask


def cutout_at(image, row0, col0, size):
    """The (size, size, ...) stamp of ``image`` whose top-left pixel is (row0, col0), zero-padded beyond it.

    The inverse of :func:`paste` for a stamp that :func:`cutout` placed.
    """
    stamp = np.zeros((size, size) + image.shape[2:], dtype=image.dtype)
    image_slices, stamp_slices = _overlap(image.shape, stamp.shape, row0, col0)
    stamp[stamp_slices] = image[image_slices]
    return stamp


def paste(canvas, stamp, row0, col0):
    """Add a stamp into a canvas in place, dropping the parts that fall outside it.

    Args:
        canvas: (H, W, ...) array to add to; modified in place.
        stamp: (h, w, ...) array with the same trailing shape as ``canvas``.
        row0: canvas row of the stamp's top-left pixel [pixels]; may be negative.
        col0: canvas column of the stamp's top-left pixel [pixels]; may be negative.

    Raises:
        ValueError: if the shapes do not match or ``row0``/``col0`` are not integers.
    """
    stamp = np.asarray(stamp)
    if canvas.ndim < 2 or stamp.shape[2:] != canvas.shape[2:] or stamp.ndim != canvas.ndim:
        raise ValueError(
            f"stamp shape {stamp.shape} and canvas shape {canvas.shape} must both be (rows, cols, ...) "
            "with the same trailing dimensions"
        )
    for name, value in (("row0", row0), ("col0", col0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"{name} must be an integer pixel index, got {value!r}")
    canvas_slices, stamp_slices = _overlap(canvas.shape, stamp.shape, int(row0), int(col0))
    canvas[canvas_slices] += stamp[stamp_slices]
