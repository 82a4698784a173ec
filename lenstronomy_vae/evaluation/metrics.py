"""Metrics used to judge reconstructions and deblending: image quality, shapes, fluxes and shear bias."""

import numpy as np
from scipy.stats import median_abs_deviation
from skimage.metrics import structural_similarity

from lenstronomy_vae.sims.shapes import adaptive_moments_shape

# SSIM's Gaussian window σ [pixels]. scikit-image truncates it at 3.5 σ, a window of 2 r + 1 = 11 px with the
# radius r = int(3.5 σ + 0.5) of scipy.ndimage, and leaves out the border of (11 − 1) // 2 = r = 5 px.
SSIM_WINDOW_SIGMA = 1.5
SSIM_BORDER = int(3.5 * SSIM_WINDOW_SIGMA + 0.5)


def ssim(image, reference, data_range=None):
    """Mean structural similarity of two 2-D images: scikit-image's ``structural_similarity``.

    Wang et al. (2004) with a Gaussian window of σ = 1.5 px (truncated at 3.5 σ: 11 × 11 px), population
    (co)variances and K1 = 0.01, K2 = 0.03. Border convention: the SSIM map is averaged over the interior
    only, leaving out a border of (11 − 1) // 2 = 5 px (:data:`SSIM_BORDER`) on every side, where the window
    leaves the image (there the reflected padding would count pixels twice).

    Args:
        image, reference: arrays (H, W) in the same units, H, W ≥ 11 px.
        data_range: dynamic range L of the images, in their units (C1 = (K1 L)², C2 = (K2 L)²);
            default ``reference.max() - reference.min()``.

    Returns:
        SSIM in [-1, 1] (dimensionless); 1 for identical images.

    Raises:
        ValueError: if the images are not 2-D, differ in shape or are smaller than the 11-px window.
    """
    image, reference = np.asarray(image, float), np.asarray(reference, float)
    if image.shape != reference.shape or image.ndim != 2:
        raise ValueError(f"ssim needs two 2-D images of one shape; got {image.shape} and {reference.shape}")
    if data_range is None:
        data_range = reference.max() - reference.min()
    return float(structural_similarity(image, reference, data_range=data_range, gaussian_weights=True,
                                       sigma=SSIM_WINDOW_SIGMA, use_sample_covariance=False, K1=0.01, K2=0.03))


def relative_flux_error(image, reference):
    """(Σ image − Σ reference) / Σ reference over the last two (pixel) axes; dimensionless."""
    total = np.sum(reference, axis=(-2, -1))
    return (np.sum(image, axis=(-2, -1)) - total) / total


def cosine_similarity(image, reference):
    """Cosine similarity Σ(a·b) / (‖a‖ ‖b‖) of two arrays, each flattened to one vector.

    Args:
        image, reference: arrays of one shape (e.g. (H, W) or (H, W, bands)); all pixels and bands count.

    Returns:
        float in [-1, 1] (dimensionless); NaN if either array has zero norm.
    """
    image, reference = np.asarray(image, float), np.asarray(reference, float)
    if image.shape != reference.shape:
        raise ValueError(f"image and reference must have one shape; got {image.shape} and {reference.shape}")
    a, b = image.ravel(), reference.ravel()
    norm_a, norm_b = np.linalg.norm(a), np.linalg.norm(b)
    if norm_a == 0 or norm_b == 0:
        return float("nan")
    return float(np.dot(a, b) / (norm_a * norm_b))


def _check_batch(images):
    """Float array of a batch (n, H, W, bands), or a ValueError."""
    images = np.asarray(images, float)
    if images.ndim != 4:
        raise ValueError(f"images must be a batch (n, H, W, bands); got shape {images.shape}")
    return images


def _check_batches(images, references):
    """Float arrays of two batches (n, H, W, bands) of one shape, or a ValueError."""
    images, references = np.asarray(images, float), np.asarray(references, float)
    if images.ndim != 4 or images.shape != references.shape:
        raise ValueError(
            f"images and references must be batches (n, H, W, bands) of one shape; "
            f"got {images.shape} and {references.shape}"
        )
    return images, references


def _check_band(band_index, bands):
    """Raise ValueError unless ``band_index`` is an integer index of one of ``bands`` bands."""
    if not isinstance(band_index, (int, np.integer)) or not -bands <= band_index < bands:
        raise ValueError(f"band_index must index one of {bands} bands; got {band_index}")


def adaptive_shapes(images, band_index, pixel_scale=1.0):
    """Adaptive-moment shape of each image of a batch in one band (:func:`adaptive_moments_shape`).

    Args:
        images: batch (n, H, W, bands), any flux units.
        band_index: index of the band (last axis) to measure.
        pixel_scale: pixel size in arcsec.

    Returns:
        array (n, 2) of (g1, g2), reduced shear (dimensionless); NaN where HSM fails, the flux is not
        positive or a pixel is not finite.
    """
    images = _check_batch(images)
    _check_band(band_index, images.shape[-1])
    return np.array([adaptive_moments_shape(image[..., band_index], pixel_scale)
                     for image in images]).reshape(len(images), 2)


def shape_errors(images, references, band_index, pixel_scale=1.0):
    """Adaptive-moment shape differences Δg = g(image) − g(reference) in one band.

    Args:
        images, references: batches (n, H, W, bands) of one shape.
        band_index: index of the band (last axis) to measure.
        pixel_scale: pixel size in arcsec.

    Returns:
        array (n, 2) of (Δg1, Δg2) in the convention of :func:`adaptive_moments_shape`; NaN where either fails.
    """
    images, references = _check_batches(images, references)
    return adaptive_shapes(images, band_index, pixel_scale) - adaptive_shapes(references, band_index, pixel_scale)


def flux_errors(images, references):
    """Per-band relative flux errors (Σ image − Σ reference) / Σ reference over pixels; dimensionless.

    Args:
        images, references: batches (n, H, W, bands) of one shape.

    Returns:
        array (n, bands).
    """
    images, references = _check_batches(images, references)
    return relative_flux_error(np.moveaxis(images, -1, 1), np.moveaxis(references, -1, 1))


def ssim_scores(images, references, band_index):
    """SSIM (scikit-image, Gaussian σ = 1.5 px, border of 5 px excluded) of each pair in one band (:func:`ssim`).

    Args:
        images, references: batches (n, H, W, bands) of one shape, H, W ≥ 11 px.
        band_index: index of the band (last axis) to compare.

    Returns:
        array (n,), dimensionless; each image's data range is that of its reference.
    """
    images, references = _check_batches(images, references)
    _check_band(band_index, images.shape[-1])
    return np.array([ssim(image[..., band_index], reference[..., band_index])
                     for image, reference in zip(images, references)]).reshape(len(images))


def cosine_similarities(images, references):
    """Cosine similarity of each pair over all its pixels and bands (:func:`cosine_similarity`).

    Args:
        images, references: batches (n, H, W, bands) of one shape.

    Returns:
        array (n,), dimensionless; NaN for a pair with a zero image.
    """
    images, references = _check_batches(images, references)
    return np.array([cosine_similarity(image, reference)
                     for image, reference in zip(images, references)]).reshape(len(images))


def robust_sigma(values):
    """Normal-consistent median absolute deviation, ignoring non-finite values.

    ``scipy.stats.median_abs_deviation(scale='normal')``: median |x − median(x)| / Φ⁻¹(3/4), where
    1 / Φ⁻¹(3/4) = 1.482602…

    Args:
        values: array of any shape (flattened).

    Returns:
        float in the units of ``values``; equals σ for Gaussian data; NaN if no value is finite.
    """
    finite = np.asarray(values, float).ravel()
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return float("nan")
    return float(median_abs_deviation(finite, scale="normal"))


def _bin_summary(low, high, values):
    """Statistics of the values of one bin (non-finite values counted as failures)."""
    finite = values[np.isfinite(values)]
    count = finite.size
    return {
        "low": float(low), "high": float(high), "count": int(count), "n_failed": int(values.size - count),
        "median": float(np.median(finite)) if count else float("nan"),
        "mean": float(np.mean(finite)) if count else float("nan"),
        "robust_sigma": robust_sigma(finite),
        "std": float(np.std(finite, ddof=1)) if count > 1 else float("nan"),
    }


def binned_statistics(x, values, edges):
    """Statistics of ``values`` in bins of ``x``, e.g. Δg or Δf/f against SNR or blendedness.

    Bins are [edges[k], edges[k+1]), the last one closed on the right, as ``numpy.histogram``; items whose x
    is outside all bins or not finite are left out.

    Args:
        x: 1-D array of the binning quantity.
        values: 1-D array of the same length; non-finite values are failures (counted, not used).
        edges: 1-D strictly increasing array of at least two finite bin edges, in the units of ``x``.

    Returns:
        list of one dict per bin with keys ``low``, ``high`` (bin edges), ``count`` (finite values),
        ``n_failed`` (non-finite values), ``median``, ``mean``, ``robust_sigma`` (see :func:`robust_sigma`) and
        ``std`` (sample standard deviation, ddof = 1), in the units of ``values``; NaN where undefined.
    """
    x, values, edges = np.asarray(x, float), np.asarray(values, float), np.asarray(edges, float)
    if x.ndim != 1 or x.shape != values.shape:
        raise ValueError(f"x and values must be 1-D arrays of one length; got shapes {x.shape} and {values.shape}")
    if edges.ndim != 1 or edges.size < 2 or not np.all(np.isfinite(edges)) or not np.all(np.diff(edges) > 0):
        raise ValueError(f"edges must be a 1-D strictly increasing array of ≥ 2 finite values; got {edges}")
    index = np.searchsorted(edges, x, side="right") - 1
    index[x == edges[-1]] = edges.size - 2
    return [_bin_summary(edges[k], edges[k + 1], values[index == k]) for k in range(edges.size - 1)]


def _check_ellipticities(name, e, shape):
    """Float array of the ellipticities ``e`` named ``name``, which must have ``shape``, or a ValueError."""
    e = np.asarray(e, float)
    if e.shape != shape:
        raise ValueError(f"{name} must be an (n, 2) array of the shape of e_plus {shape}; got {e.shape}")
    return e


def shear_bias(e_plus, e_minus, shear, e_plus_turned=None, e_minus_turned=None, n_bootstrap=200, seed=0):
    """Multiplicative and additive shear bias, e = (1 + m) g + c, from paired (± shear) measurements.

    The same galaxies (same noise) are simulated with the reduced shear +shear and −shear, and optionally also
    turned by 90° (intrinsic shape negated) with +shear and −shear; row i is the same galaxy in every array.
    Per component j with s_j ≠ 0: m_j = mean_i(e+_ij − e−_ij) / (2 s_j) − 1 (with turned pairs, the mean of
    both pairs' differences); c_j = mean of e_ij over all given arrays. With turned pairs the intrinsic shapes
    cancel in c; without them c is dominated by shape noise (the mean intrinsic ellipticity of the sample).
    The ellipticities should be reduced-shear-like (as :func:`adaptive_moments_shape`), whose response to shear
    is 1; distortion-like ellipticities respond ≈ 2 (1 − e_rms²) and would show a large m.

    Args:
        e_plus, e_minus: arrays (n, 2) of estimated (e1, e2) under +shear and −shear.
        shear: applied reduced shear (s1, s2), not both zero.
        e_plus_turned, e_minus_turned: optional arrays (n, 2) for the 90°-turned galaxies; both or neither.
        n_bootstrap: number (≥ 2) of bootstrap resamplings of the galaxies (rows) for the errors.
        seed: seed of the bootstrap's random generator.

    Returns:
        dict with ``m``, ``m_err``, ``c``, ``c_err`` (lists of two floats: components 1, 2; errors are
        bootstrap standard errors; m is NaN where s_j = 0) and ``n``, the number of rows used (rows with a NaN
        or infinite value in any array are dropped).
    """
    e_plus = np.asarray(e_plus, float)
    if e_plus.ndim != 2 or e_plus.shape[1] != 2:
        raise ValueError(f"e_plus must be an (n, 2) array; got shape {e_plus.shape}")
    e_minus = _check_ellipticities("e_minus", e_minus, e_plus.shape)
    pairs = [(e_plus, e_minus)]
    if (e_plus_turned is None) != (e_minus_turned is None):
        raise ValueError("e_plus_turned and e_minus_turned must be given together or not at all")
    if e_plus_turned is not None:
        pairs.append((_check_ellipticities("e_plus_turned", e_plus_turned, e_plus.shape),
                      _check_ellipticities("e_minus_turned", e_minus_turned, e_plus.shape)))
    shear = np.asarray(shear, float)
    if shear.shape != (2,) or not np.all(np.isfinite(shear)) or not np.any(shear != 0):
        raise ValueError(f"shear must be two finite numbers (s1, s2), not both zero; got {shear}")
    if int(n_bootstrap) != n_bootstrap or n_bootstrap < 2:
        raise ValueError(f"n_bootstrap must be an integer ≥ 2; got {n_bootstrap}")
    # Per-galaxy difference (response) and mean (additive) terms, averaged over the given pairs.
    difference = np.mean([plus - minus for plus, minus in pairs], axis=0)
    average = np.mean([(plus + minus) / 2 for plus, minus in pairs], axis=0)
    usable = np.all(np.isfinite(np.stack([e for pair in pairs for e in pair])), axis=(0, 2))
    difference, average = difference[usable], average[usable]
    n = int(usable.sum())
    if n == 0:
        raise ValueError("no galaxy (row) has finite ellipticities in every array")
    scale = np.divide(1, 2 * shear, out=np.full(2, np.nan), where=shear != 0)

    def estimate(rows):
        return difference[rows].mean(axis=0) * scale - 1, average[rows].mean(axis=0)

    m, c = estimate(slice(None))
    rng = np.random.default_rng(seed)
    resampled = np.array([estimate(rng.integers(0, n, n)) for _ in range(int(n_bootstrap))])
    m_err, c_err = resampled.std(axis=0, ddof=1)
    return {"m": m.tolist(), "m_err": m_err.tolist(), "c": c.tolist(), "c_err": c_err.tolist(), "n": n}
