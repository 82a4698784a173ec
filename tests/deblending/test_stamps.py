"""Cut-out and paste on astropy's overlap_slices give what the former hand-written overlap gave."""

import itertools
import math

import numpy as np
import pytest

from lenstronomy_vae.deblending.stamps import cutout, paste


def former_overlap(row0, col0, stamp_shape, canvas_shape):
    """The former overlap: slices (stamp, canvas) of a stamp with top-left pixel (row0, col0) on a canvas."""
    rows = (max(row0, 0), min(row0 + stamp_shape[0], canvas_shape[0]))
    cols = (max(col0, 0), min(col0 + stamp_shape[1], canvas_shape[1]))
    if rows[0] >= rows[1] or cols[0] >= cols[1]:
        return (slice(0, 0), slice(0, 0)), (slice(0, 0), slice(0, 0))
    canvas_slices = (slice(*rows), slice(*cols))
    stamp_slices = (slice(rows[0] - row0, rows[1] - row0), slice(cols[0] - col0, cols[1] - col0))
    return stamp_slices, canvas_slices


def former_cutout(image, x, y, size):
    """The former cutout: x column, y row [pixels]; the centre pixel is floor(v + 0.5)."""
    row0, col0 = math.floor(y + 0.5) - size // 2, math.floor(x + 0.5) - size // 2
    stamp = np.zeros((size, size) + image.shape[2:], dtype=image.dtype)
    stamp_slices, image_slices = former_overlap(row0, col0, stamp.shape, image.shape)
    stamp[stamp_slices] = image[image_slices]
    return stamp, (row0, col0)


def former_paste(canvas, stamp, row0, col0):
    """The former paste: add the part of the stamp inside the canvas, in place."""
    stamp_slices, canvas_slices = former_overlap(int(row0), int(col0), stamp.shape, canvas.shape)
    canvas[canvas_slices] += stamp[stamp_slices]


CANVASES = [(20, 31), (20, 31, 3), (5, 4), (5, 4, 2), (1, 1)]


def positions(shape, size, rng):
    """(x, y) [pixels]: inside, on and beyond every edge, half and fully outside, halves, and random ones."""
    rows, cols = shape[:2]
    reach = size // 2 + 2
    xs = [-reach - 1.0, -reach, -size / 2, -0.5, -0.49, 0.0, 0.5, 1.5, cols / 2, cols - 1.5, cols - 1, cols - 0.5,
          cols, cols + size / 2, cols + reach]
    ys = [-reach - 1.0, -reach, -size / 2, -0.5, -0.49, 0.0, 0.5, 2.5, rows / 2, rows - 1.5, rows - 1, rows - 0.5,
          rows, rows + size / 2, rows + reach]
    grid = list(itertools.product(xs, ys))
    randoms = zip(rng.uniform(-size, cols + size, 60), rng.uniform(-size, rows + size, 60))
    halves = zip(rng.integers(-size, cols + size, 30) + 0.5, rng.integers(-size, rows + size, 30) - 0.5)
    return grid + list(randoms) + list(halves)


@pytest.mark.parametrize("shape", CANVASES)
def test_cutout_equals_the_former_cutout(shape):
    rng = np.random.default_rng(len(shape) * 100 + shape[0])
    image = rng.normal(size=shape)
    for size in (1, 3, 7, 21, 41):  # odd sizes only; 21 and 41 exceed some canvases
        for x, y in positions(shape, size, rng):
            stamp, corner = cutout(image, x, y, size)
            expected, expected_corner = former_cutout(image, x, y, size)
            assert corner == expected_corner, (shape, size, x, y)
            assert stamp.dtype == expected.dtype and stamp.shape == expected.shape
            np.testing.assert_array_equal(stamp, expected, err_msg=f"shape {shape}, size {size}, (x, y) = ({x}, {y})")


def test_cutout_rounds_halves_up():
    image = np.arange(25.0).reshape(5, 5)
    assert cutout(image, 1.5, 2.5, 1) == (np.array([[image[3, 2]]]), (3, 2))
    assert cutout(image, -0.5, -0.5, 1)[1] == (0, 0)
    assert cutout(image, 1.49, 2.49, 1)[1] == (2, 1)


@pytest.mark.parametrize("shape", CANVASES)
def test_paste_equals_the_former_paste(shape):
    rng = np.random.default_rng(len(shape) * 100 + shape[0] + 1)
    canvas = rng.normal(size=shape)
    for rows, cols in [(1, 1), (2, 2), (3, 4), (4, 3), (6, 6), (7, 7), (25, 40), (40, 25)]:
        stamp = rng.normal(size=(rows, cols) + shape[2:])
        corners = itertools.product(range(-rows - 2, shape[0] + 3), range(-cols - 2, shape[1] + 3))
        for row0, col0 in corners:
            result, expected = canvas.copy(), canvas.copy()
            paste(result, stamp, row0, col0)
            former_paste(expected, stamp, row0, col0)
            np.testing.assert_array_equal(result, expected, err_msg=f"canvas {shape}, stamp {stamp.shape}, "
                                                                    f"corner ({row0}, {col0})")


@pytest.mark.parametrize("shape", CANVASES)
def test_cutout_then_paste_equals_the_former_round_trip(shape):
    rng = np.random.default_rng(7)
    image = rng.normal(size=shape)
    for x, y in positions(shape, 5, rng):
        stamp, (row0, col0) = cutout(image, x, y, 5)
        canvas = np.zeros_like(image)
        paste(canvas, stamp, np.int64(row0), col0)
        expected = np.zeros_like(image)
        former_paste(expected, former_cutout(image, x, y, 5)[0], row0, col0)
        np.testing.assert_array_equal(canvas, expected)
