"""Galaxy shapes from GalSim's adaptive moments (HSM), as reduced shear.

Convention everywhere: g = (1 − q) / (1 + q) for axis ratio q, (g1, g2) = g (cos 2φ, sin 2φ) with the
position angle φ counter-clockwise from the +x (column) axis, as ``galsim.Shear(g1=, g2=)``.
"""

import math

import galsim
import numpy as np


def _adaptive_moments(image, pixel_scale, guess_centre=None):
    """GalSim's adaptive moments of a 2-D image, or None when HSM fails, the flux is not positive or a pixel not finite.

    Args: as :func:`adaptive_moments_shape`.
    """
    array = np.array(image, dtype=np.float64, order="C")
    if array.ndim != 2:
        raise ValueError(f"image must be 2-D (H, W); got shape {array.shape}")
    if not pixel_scale > 0:
        raise ValueError(f"pixel_scale must be positive; got {pixel_scale}")
    if not np.all(np.isfinite(array)) or not array.sum() > 0:
        return None
    galsim_image = galsim.Image(array, scale=pixel_scale)
    centroid = None
    if guess_centre is not None:
        offset = np.asarray(guess_centre, float)
        if offset.shape != (2,) or not np.all(np.isfinite(offset)):
            raise ValueError(f"guess_centre must be two finite numbers (dx, dy); got {guess_centre!r}")
        centroid = galsim_image.true_center + galsim.PositionD(*offset)
    moments = galsim.hsm.FindAdaptiveMom(galsim_image, guess_centroid=centroid, strict=False)
    return None if moments.error_message else moments


def adaptive_moments_shape(image, pixel_scale=1.0, guess_centre=None):
    """Adaptive-moment shape of a 2-D image as reduced shear (GalSim ``hsm.FindAdaptiveMom``, strict=False).

    Convention: g = (1 − q) / (1 + q) for axis ratio q, (g1, g2) = g (cos 2φ, sin 2φ) with the position
    angle φ counter-clockwise from the +x (column) axis, as ``galsim.Shear(g1=, g2=)``.

    Args:
        image: array (H, W), rows y and columns x, in any flux units.
        pixel_scale: pixel size in arcsec (square pixels; the shape itself does not depend on it).
        guess_centre: optional (dx, dy) start of the centroid search in pixels, relative to the image's
            true centre (x along columns, y along rows); default the true centre.

    Returns:
        (g1, g2) as floats; (nan, nan) if HSM fails, the total flux is not positive or a pixel is not finite.
    """
    moments = _adaptive_moments(image, pixel_scale, guess_centre)
    if moments is None:
        return float("nan"), float("nan")
    return float(moments.observed_shape.g1), float(moments.observed_shape.g2)


def adaptive_moments_size(image, pixel_scale):
    """Adaptive-moment σ [arcsec] of a 2-D image (GalSim HSM, started at the stamp centre); NaN when HSM fails."""
    moments = _adaptive_moments(image, pixel_scale)
    return float("nan") if moments is None else float(moments.moments_sigma * pixel_scale)


def as_reduced_shear(distortion_1, distortion_2):
    """Reduced shear g of a distortion e = (a² - b²)/(a² + b²): g = e / (1 + sqrt(1 - |e|²))."""
    e = math.hypot(distortion_1, distortion_2)
    if e >= 1:
        return math.nan, math.nan
    factor = 1 / (1 + math.sqrt(1 - e * e))
    return distortion_1 * factor, distortion_2 * factor


def truth_shapes(image, psf_image, pixel_scale, centre):
    """(hsm_g1, hsm_g2, regauss_g1, regauss_g2) of a noiseless isolated image; NaN where HSM fails.

    Args:
        image: (H, W) PSF-convolved image, any flux units.
        psf_image: ``galsim.Image`` of the PSF with its pixel response, on the image's grid.
        pixel_scale: arcsec per pixel.
        centre: (dx, dy) of the galaxy from the stamp centre [pixels], where HSM starts.

    Returns:
        The adaptive-moment shape, then the re-Gaussianization PSF-corrected shape, as reduced shears.
    """
    raw = adaptive_moments_shape(image, pixel_scale, guess_centre=centre)
    galaxy = galsim.Image(np.ascontiguousarray(image, dtype=np.float64), scale=pixel_scale)
    guess = galaxy.true_center + galsim.PositionD(*centre)
    corrected = galsim.hsm.EstimateShear(galaxy, psf_image, shear_est="REGAUSS", guess_centroid=guess, strict=False)
    if corrected.error_message:
        return (*raw, math.nan, math.nan)
    return (*raw, *as_reduced_shear(corrected.corrected_e1, corrected.corrected_e2))
