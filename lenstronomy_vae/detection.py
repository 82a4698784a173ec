"""Source detection on multi-band scenes, the segmentation-map deblender baseline, and stamp cut-and-paste.

Images are numpy arrays (H, W, bands), channels last, sky-subtracted, in electrons (the survey's
image units). Detection runs SExtractor's algorithm (the ``sep`` library) on the
inverse-variance-weighted combination of the bands.

Pixel coordinates follow ``sep``: ``x`` is the column and ``y`` the row, 0-indexed, with pixel
centres at integers, so pixel ``image[row, col]`` covers ``x`` in [col - 0.5, col + 0.5].

Example::

    detections = detect(scene, survey.noise_sigma)
    result = segmentation_deblend(scene, survey.noise_sigma)
    stamp, (row0, col0) = cutout(scene, detections.x[0], detections.y[0], survey.stamp_size)
"""

import dataclasses
import math

import numpy as np
import sep

from lenstronomy_vae.validation import check_count


@dataclasses.dataclass
class Detections:
    """Sources found by :func:`detect`, brightest first.

    Attributes:
        x: barycentre column of each detection [pixels], shape (n,).
        y: barycentre row of each detection [pixels], shape (n,).
        flux: sum of the detection image over each detection's segment [electrons, as the
            detection image], shape (n,), decreasing.
        segmentation: (H, W) int map: 0 for background, ``k + 1`` for pixels of detection ``k``.
    """

    x: np.ndarray
    y: np.ndarray
    flux: np.ndarray
    segmentation: np.ndarray

    def __len__(self):
        return len(self.x)


@dataclasses.dataclass
class SegmentationDeblend:
    """Result of :func:`segmentation_deblend`.

    Attributes:
        image: (H, W, bands) scene with every pixel outside the chosen detection's segment set
            to zero [electrons]; all zeros if nothing was detected.
        index: index of the chosen detection in ``detections``, or None if there is none.
        detections: everything detected in the scene.
    """

    image: np.ndarray
    index: int | None
    detections: Detections


def _checked_image(image):
    """``image`` as a finite float64 (H, W, bands) array."""
    image = np.asarray(image, dtype=np.float64)
    if image.ndim != 3 or 0 in image.shape:
        raise ValueError(f"image must be a non-empty 3-D array (H, W, bands), got shape {image.shape}")
    n_bad = int(np.count_nonzero(~np.isfinite(image)))
    if n_bad:
        raise ValueError(f"image has {n_bad} NaN or infinite pixel values out of {image.size}; mask or fill them")
    return image


def _checked_noise(noise_sigma, n_bands):
    """``noise_sigma`` as a float64 array of ``n_bands`` positive finite values."""
    sigma = np.asarray(noise_sigma, dtype=np.float64)
    if sigma.shape != (n_bands,):
        raise ValueError(
            f"noise_sigma must hold one value per band ({n_bands} for this image), got shape {sigma.shape}: {sigma}"
        )
    if not np.all(np.isfinite(sigma) & (sigma > 0)):
        raise ValueError(f"noise_sigma must be positive and finite in every band, got {sigma}")
    return sigma


def _checked_position(name, x, y):
    """(x, y) as floats, checked finite."""
    x, y = float(x), float(y)
    if not (math.isfinite(x) and math.isfinite(y)):
        raise ValueError(f"{name} must be finite pixel coordinates, got ({x}, {y})")
    return x, y


def detection_image(image, noise_sigma):
    """Combine the bands of a scene into one detection image of the best signal-to-noise.

    Each band is weighted by its inverse noise variance, with the weights normalised to sum to
    one: ``D = Σ_b w_b I_b`` with ``w_b = σ_b⁻² / Σ_c σ_c⁻²``. ``D`` is thus in electrons and
    its background noise is ``σ_D = (Σ_b σ_b⁻²)^(-1/2)`` per pixel; the weights maximise the
    signal-to-noise of a source with the same flux in every band.

    Args:
        image: (H, W, bands) sky-subtracted scene [electrons]; must be finite.
        noise_sigma: background noise standard deviation of one pixel in each band
            [electrons], e.g. ``survey.noise_sigma``; one positive value per band.

    Returns:
        (detection, sigma): the (H, W) float64 C-contiguous detection image [electrons] and
        its per-pixel background noise standard deviation (a float) [electrons].

    Raises:
        ValueError: if ``image`` is not 3-D or holds NaN or infinite values, or if
            ``noise_sigma`` does not hold one positive value per band.
    """
    image = _checked_image(image)
    sigma = _checked_noise(noise_sigma, image.shape[2])
    inverse_variance = sigma**-2
    weights = inverse_variance / inverse_variance.sum()
    detection = np.ascontiguousarray(image @ weights)
    return detection, float(inverse_variance.sum() ** -0.5)


def detect(image, noise_sigma, threshold=5.0, min_area=5, deblend_nthresh=32, deblend_cont=0.005):
    """Find the sources of a multi-band scene with ``sep`` (SExtractor) on its detection image.

    Args:
        image: (H, W, bands) sky-subtracted scene [electrons]; must be finite.
        noise_sigma: background noise standard deviation of one pixel in each band [electrons].
        threshold: detection threshold in units of the detection image's per-pixel noise σ.
            sep applies it to the image smoothed by its default 3×3 kernel, whose noise is
            0.375 σ, so the default 5 is ~13 standard deviations of the smoothed noise.
        min_area: fewest connected pixels above the threshold that make a source [pixels].
        deblend_nthresh: number of deblending sub-thresholds.
        deblend_cont: least fraction of the total flux a branch needs to be split off as its
            own source; 1 turns deblending off.

    Returns:
        :class:`Detections`, brightest first, with ``x`` (column) and ``y`` (row) barycentres
        in sep's convention (0-indexed, pixel centres at integers).

    Raises:
        ValueError: on an invalid image, noise or detection setting.
    """
    if not (math.isfinite(threshold) and threshold > 0):
        raise ValueError(f"threshold must be a positive number of noise sigmas, got {threshold!r}")
    check_count("min_area", min_area)
    check_count("deblend_nthresh", deblend_nthresh)
    if not 0 <= deblend_cont <= 1:
        raise ValueError(f"deblend_cont must be within [0, 1], got {deblend_cont!r}")
    detection, sigma = detection_image(image, noise_sigma)
    objects, segmentation = sep.extract(
        detection, threshold, err=sigma, minarea=min_area, deblend_nthresh=deblend_nthresh,
        deblend_cont=deblend_cont, segmentation_map=True,
    )
    order = np.argsort(-objects["flux"], kind="stable")
    relabel = np.zeros(len(objects) + 1, dtype=np.int32)
    relabel[order + 1] = np.arange(1, len(objects) + 1)
    return Detections(
        x=np.asarray(objects["x"][order], dtype=np.float64),
        y=np.asarray(objects["y"][order], dtype=np.float64),
        flux=np.asarray(objects["flux"][order], dtype=np.float64),
        segmentation=relabel[segmentation],
    )


def nearest_detection(detections, x, y):
    """Index of the detection whose barycentre is nearest to the pixel position (x, y).

    Args:
        detections: :class:`Detections` from :func:`detect`.
        x: column [pixels], sep's convention.
        y: row [pixels].

    Returns:
        The index (an int) into ``detections``, or None if there are no detections.
    """
    x, y = _checked_position("(x, y)", x, y)
    if len(detections) == 0:
        return None
    return int(np.argmin(np.hypot(detections.x - x, detections.y - y)))


def segmentation_deblend(image, noise_sigma, position=None, **detect_kwargs):
    """The segmentation-map deblender: keep only the pixels of the detection nearest a position.

    This is the baseline the VAE deblender is compared against: it detects the sources of the
    scene, chooses the one nearest to ``position`` and zeroes every pixel (in all bands)
    outside that source's segment. The kept pixels are the noisy scene's, so the model
    includes noise and any neighbour light on those pixels, and misses the target's light
    outside its segment.

    Args:
        image: (H, W, bands) sky-subtracted scene [electrons]; must be finite.
        noise_sigma: background noise standard deviation of one pixel in each band [electrons].
        position: (x, y) of the target [pixels], column and row in sep's convention; default
            the image centre ((W - 1) / 2, (H - 1) / 2).
        **detect_kwargs: passed on to :func:`detect` (threshold, min_area, ...).

    Returns:
        :class:`SegmentationDeblend` with the masked image, the chosen detection's index
        (None, and an all-zero image, if nothing was detected) and all detections.
    """
    image = _checked_image(image)
    height, width = image.shape[:2]
    x, y = ((width - 1) / 2, (height - 1) / 2) if position is None else _checked_position("position", *position)
    detections = detect(image, noise_sigma, **detect_kwargs)
    index = nearest_detection(detections, x, y)
    if index is None:
        return SegmentationDeblend(np.zeros_like(image), None, detections)
    in_segment = detections.segmentation == index + 1
    return SegmentationDeblend(image * in_segment[:, :, None], index, detections)


def _overlap(row0, col0, stamp_shape, canvas_shape):
    """Slices (stamp, canvas) of the part of a stamp at (row0, col0) that lies inside a canvas."""
    rows = (max(row0, 0), min(row0 + stamp_shape[0], canvas_shape[0]))
    cols = (max(col0, 0), min(col0 + stamp_shape[1], canvas_shape[1]))
    if rows[0] >= rows[1] or cols[0] >= cols[1]:
        return (slice(0, 0), slice(0, 0)), (slice(0, 0), slice(0, 0))
    canvas_slices = (slice(*rows), slice(*cols))
    stamp_slices = (slice(rows[0] - row0, rows[1] - row0), slice(cols[0] - col0, cols[1] - col0))
    return stamp_slices, canvas_slices


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
    x, y = _checked_position("(x, y)", x, y)
    image = np.asarray(image)
    if image.ndim < 2:
        raise ValueError(f"image must have at least 2 dimensions (H, W, ...), got shape {image.shape}")
    row0, col0 = math.floor(y + 0.5) - size // 2, math.floor(x + 0.5) - size // 2
    stamp = np.zeros((size, size) + image.shape[2:], dtype=image.dtype)
    stamp_slices, image_slices = _overlap(row0, col0, stamp.shape, image.shape)
    stamp[stamp_slices] = image[image_slices]
    return stamp, (row0, col0)


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
    stamp_slices, canvas_slices = _overlap(int(row0), int(col0), stamp.shape, canvas.shape)
    canvas[canvas_slices] += stamp[stamp_slices]
