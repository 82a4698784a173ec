"""Fit one unlensed galaxy stamp with a 'VAE' profile: ``fit_galaxy(image, noise, psf, pixel_scale)``.

The fit is lenstronomy's own: a FittingSequence with the 'LM' step, from the mean galaxy and,
with ``restarts``, from more starts drawn from the latent prior; the lowest χ² wins. The result
says how far to trust it: ``converged`` (from 'LM'), ``at_bounds`` and ``warnings`` (fitted flux
far from the stamp's sum, a sky pedestal, an off-centre PSF, parameters pressed against their
bounds, ...), the warnings also emitted once per fit as one :class:`GalaxyFitWarning`.
"""

import time
import warnings

import numpy as np
from lenstronomy.Workflow.fitting_sequence import FittingSequence
from scipy.stats import chi2 as chi2_distribution

from lenstronomy_vae.lensing.parameters import check_data, latent_prior, vae_source_params
from lenstronomy_vae.networks.galaxy_model import load_galaxy_model
from lenstronomy_vae.utils.checks import check_count, check_seed

# A parameter is "at its bound" within this fraction of its bound range (latents: 0.01 of ±5).
_BOUND_TOLERANCE = 1e-3
# Σz² above this quantile of χ² with d degrees of freedom: N(0, 1) latents exceed it once in 1000 fits.
_LATENT_NORM_QUANTILE = 0.999
# Fitted total flux against the stamp's sum: flagged when off by more than this fraction and
# by more than _SIGNIFICANCE standard deviations of the sum.
_FLUX_TOLERANCE = 0.25
_SIGNIFICANCE = 5.0
# The sky-pedestal check reads the pixels this close to the stamp's edge (pixels).
_BORDER_WIDTH = 2
_MIN_BORDER_PIXELS = 8
# Standard error of the median of n Gaussian values: sqrt(π / 2) σ / sqrt(n).
_MEDIAN_EFFICIENCY = np.sqrt(np.pi / 2)
# A PSF whose brightest pixel or centroid lies farther than this from the kernel centre (pixels).
_PSF_CENTRE_TOLERANCE = 1.0
# Restarts: latents drawn from the N(0, 1) prior, the centre jittered by this many image pixels
# (standard deviation), the scale by this standard deviation of its logarithm (a factor ~1.6). With
# 8 restarts on 5 COSMOS stamps, this reached the lowest χ² of the variants tried (scale σ 0.3, latents
# at 0, latents from N(0, 0.5²)) on IDENT 2 and within 1 % of the lowest on the other four.
_RESTART_CENTRE_PIXELS = 1.0
_RESTART_LOG_SCALE = 0.5


class GalaxyFitWarning(UserWarning):
    """A :func:`fit_galaxy` result to treat with care; the message joins the result's ``warnings``."""


def _planar(name, array):
    """``array`` as a 2-D float array, a leading axis of length 1 ((1, H, W) cubes) squeezed."""
    array = np.asarray(array, dtype=float)
    while array.ndim > 2 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (or a (1, H, W) cube); got shape {array.shape}")
    return array


def prepare_psf(psf):
    """The PSF as lenstronomy needs it: a square kernel of odd size and unit sum.

    A kernel of another shape (GalSim RealGalaxyCatalog PSFs are 65 × 51 pixels) is zero-padded
    to the smallest odd square centred on its brightest pixel, which keeps all of its flux.

    Args:
        psf: 2-D kernel (or (1, H, W)) sampled at the image's pixel scale, any normalisation.

    Returns:
        (kernel, note, warning): ``note`` says how the kernel was padded (None if it was not);
        ``warning`` is a sentence when the kernel's brightest pixel or centroid lies more than
        1 pixel from its centre (None otherwise).

    Raises:
        ValueError: not 2-D, not finite, or a non-positive sum.
    """
    psf = _planar("psf", psf)
    if not np.all(np.isfinite(psf)) or not psf.sum() > 0:
        raise ValueError(f"psf must be finite with a positive sum; got sum {psf.sum()} and "
                         f"{int(np.sum(~np.isfinite(psf)))} NaN or infinite pixel(s)")
    rows, columns = psf.shape
    peak_row, peak_column = (int(i) for i in np.unravel_index(np.argmax(psf), psf.shape))
    note = None
    if rows != columns or rows % 2 == 0:
        half = max(peak_row, peak_column, rows - 1 - peak_row, columns - 1 - peak_column)
        padded = np.zeros((2 * half + 1, 2 * half + 1))
        padded[half - peak_row: half - peak_row + rows, half - peak_column: half - peak_column + columns] = psf
        note = (f"The PSF kernel of shape {psf.shape} was zero-padded to {2 * half + 1} × {2 * half + 1} pixels, "
                f"centred on its brightest pixel (row {peak_row}, column {peak_column}): lenstronomy needs a square "
                "kernel of odd size.")
        psf, peak_row, peak_column = padded, half, half
    kernel = psf / psf.sum()
    centre = (kernel.shape[0] - 1) / 2
    row_index, column_index = np.indices(kernel.shape)
    peak_offset = np.hypot(peak_row - centre, peak_column - centre)
    centroid_offset = np.hypot(np.sum(kernel * row_index) - centre, np.sum(kernel * column_index) - centre)
    warning = None
    if max(peak_offset, centroid_offset) > _PSF_CENTRE_TOLERANCE:
        warning = (f"The PSF's brightest pixel is {peak_offset:.1f} px and its centroid {centroid_offset:.1f} px from "
                   "the kernel centre: the fitted centre is off by as much; centre the PSF kernel on its peak.")
    return kernel, note, warning


def _used_pixels(mask, noise_map):
    """Pixels that enter χ²: nonzero in ``mask`` (all without one) and of finite noise."""
    used = np.ones(noise_map.shape, dtype=bool)
    if mask is not None:
        mask = _planar("mask", mask)
        if mask.shape != noise_map.shape:
            raise ValueError(f"mask has shape {mask.shape} but the image has {noise_map.shape}")
        if not np.all(np.isfinite(mask)):
            raise ValueError(f"mask has {int(np.sum(~np.isfinite(mask)))} NaN or infinite value(s); "
                             "it must be 0 (leave the pixel out) or nonzero (use the pixel)")
        used = mask != 0
    used &= noise_map < np.inf
    if not used.any():
        raise ValueError("no pixel left to fit: the mask (nonzero = use the pixel) and the noise map "
                         "(infinite = leave out) leave every pixel out")
    return used


def fit_galaxy(image, noise, psf, pixel_scale, model=None, band=None, max_iterations=50, fit_rotation=False,
               seed=0, mask=None, restarts=0):
    """Fit a galaxy stamp with a VAE profile by Levenberg–Marquardt (lenstronomy 'LM' step).

    The first fit starts from the mean galaxy (latents 0) at the flux-weighted centroid, with the
    model's training pixel scale; each restart starts from latents drawn from the N(0, 1) prior,
    the centre moved by ~1 image pixel and the scale by a factor ~1.6 (seeded). The latents carry a
    standard-normal prior, the amplitude is solved linearly, and the start with the lowest
    'LM' χ² (−2 logL, prior included) wins.

    Args:
        image: sky-subtracted stamp (H, W) or (1, H, W), rectangular allowed, flux per pixel in
            any units; NaN allowed in pixels that ``mask`` or an infinite noise leaves out.
        noise: per-pixel noise standard deviation (not variance), image units: a number or an
            array like ``image``; infinite leaves a pixel out.
        psf: PSF kernel sampled at the image's pixel scale; normalised here, and zero-padded to
            a square of odd size centred on its brightest pixel when it is not one (a note says so).
        pixel_scale: arcsec per image pixel, positive.
        model: shipped model name or ``.keras`` path; None for the default model.
        band: band name or index of a multi-band model.
        max_iterations: LM iteration budget of each start.
        fit_rotation: also fit ``phi_G`` (radians); off by default, the latents carry orientation.
        seed: seed of numpy's global generator, which lenstronomy uses, and of the restarts' draws.
        mask: array like ``image``, nonzero = fit the pixel, 0 = leave it out; None for all.
        restarts: extra LM starts beyond the first (0 for one fit).

    Returns:
        dict:

        * ``kwargs``: the VAE parameters (``amp`` = total flux in image units, centres in arcsec
          from the stamp centre, x along columns and y along rows, ``scale`` in arcsec per decoder
          pixel, ``phi_G`` in radians, latents);
        * ``model_image`` (H, W), image units; ``residuals``: (image − model) / noise, 0 at the
          pixels left out;
        * ``chi2`` (of the pixels fitted), ``pixels`` (their number), ``reduced_chi2`` (χ² / pixels);
        * ``iterations``, ``evaluations`` and ``converged`` of the winning start's 'LM';
          ``seconds``: wall time of all starts;
        * ``stamp_flux``: sum of the fitted pixels plus the model in the pixels left out, image units;
        * ``latent_norm_squared`` (Σz²) and ``latent_norm_limit`` (99.9 % quantile of χ²_d);
        * ``at_bounds``: names of the free parameters within 0.1 % of their bound range from a
          bound, and ``"latent_norm"`` when Σz² exceeds its limit;
        * ``restarts``: ``{"ran": restarts, "winner": index of the winning start (0 = the mean
          galaxy), "chi2": 'LM' χ² of each start}``;
        * ``warnings``: sentences on what may spoil the fit (also emitted as one
          :class:`GalaxyFitWarning`); ``notes``: what was done to the inputs (PSF padding).

    Raises:
        ValueError: a bad input, named: an image that is not 2-D or holds NaN or infinite pixels
            it fits, a non-positive noise or one of the wrong shape, a bad PSF, a non-positive
            pixel scale, a mask of the wrong shape or that leaves no pixel, no positive pixel to
            fit, a bad band or model, a negative ``restarts``.
    """
    image = _planar("image", image)
    if not (isinstance(pixel_scale, (int, float, np.number)) and np.isfinite(pixel_scale) and pixel_scale > 0):
        raise ValueError(f"pixel_scale must be a positive number of arcsec per pixel; got {pixel_scale!r}")
    check_count("max_iterations", max_iterations)
    check_seed(seed)
    if isinstance(restarts, bool) or not isinstance(restarts, (int, np.integer)) or restarts < 0:
        raise ValueError(f"restarts must be a non-negative integer; got {restarts!r}")
    noise = np.asarray(noise, dtype=float)
    try:
        noise_map = np.broadcast_to(_planar("noise", noise) if noise.ndim > 2 else noise, image.shape).copy()
    except ValueError:
        raise ValueError(f"noise must be a number or an array of the image's shape {image.shape}; "
                         f"got shape {noise.shape}") from None
    used = _used_pixels(mask, noise_map)
    image = np.where(~used & ~np.isfinite(image), 0.0, image)
    check_data({"image_data": image, "noise_map": noise_map})
    kwargs_data, grid_used, window = _square_grid(image, noise_map, used, pixel_scale)
    kernel, psf_note, psf_warning = prepare_psf(psf)
    galaxy_model = load_galaxy_model(model)
    _, _, _, lower, upper = vae_source_params(model=model, band=band)  # a bad band fails here, before any fit

    rows, columns = image.shape
    x = (np.arange(columns) - (columns - 1) / 2) * pixel_scale
    y = (np.arange(rows) - (rows - 1) / 2) * pixel_scale
    weights = np.where(used, np.clip(image, 0, None), 0.0)
    total = weights.sum()
    if not total > 0:
        raise ValueError("the image has no positive pixel among those fitted: nothing to fit (wrong HDU, or an "
                         "empty cut-out?)")
    center = (float(weights.sum(axis=0) @ x / total), float(weights.sum(axis=1) @ y / total))
    starts = [(center, galaxy_model.pixel_scale, np.zeros(galaxy_model.latent_dim))]
    starts += _restart_points(center, galaxy_model, pixel_scale, restarts, seed, lower, upper)

    setup = {
        "kwargs_data_joint": {"multi_band_list": [[kwargs_data, {"psf_type": "PIXEL", "kernel_point_source": kernel},
                                                   {"supersampling_factor": 1}]],
                              "multi_band_type": "single-band"},
        "kwargs_model": {"lens_light_model_list": ["VAE"],
                         "lens_light_profile_kwargs_list": [{"model": model, "band": band}]},
        "kwargs_likelihood": {"check_positive_flux": True, "image_likelihood_mask_list": [grid_used],
                              "prior_lens_light": latent_prior(0, model=model, band=band)},
    }
    begin = time.perf_counter()
    np.random.seed(seed)
    fits = [_lm_fit(setup, start, model, band, fit_rotation, max_iterations) for start in starts]
    seconds = time.perf_counter() - begin
    winner = int(np.argmin([fit["info"]["chi2"] for fit in fits]))
    best = fits[winner]
    image_fit = best["fitting"].likelihood_class.image_likelihood.imSim
    model_image = image_fit.image_linear_solve(kwargs_lens_light=[best["kwargs"]])[0][window]
    residuals = np.where(used, (image - model_image) / noise_map, 0.0)
    pixel_chi2 = float(np.sum(residuals**2))
    info = best["info"]
    result = {
        "kwargs": best["kwargs"], "model_image": model_image, "residuals": residuals, "chi2": pixel_chi2,
        "pixels": int(used.sum()), "reduced_chi2": pixel_chi2 / int(used.sum()), "iterations": info["iterations"],
        "evaluations": info["evaluations"], "converged": bool(info["converged"]), "seconds": seconds,
        "stamp_flux": float(image[used].sum() + model_image[~used].sum()),
        "restarts": {"ran": int(restarts), "winner": winner, "chi2": [float(fit["info"]["chi2"]) for fit in fits]},
        "notes": [psf_note] if psf_note else [],
    }
    latents = np.array([best["kwargs"][f"z_{i}"] for i in range(galaxy_model.latent_dim)])
    result["latent_norm_squared"] = float(latents @ latents)
    result["latent_norm_limit"] = float(chi2_distribution.ppf(_LATENT_NORM_QUANTILE, galaxy_model.latent_dim))
    fitted = [name for name in best["kwargs"] if name != "amp" and (fit_rotation or name != "phi_G")]
    result["at_bounds"] = _at_bounds(best["kwargs"], fitted, lower, upper)
    if result["latent_norm_squared"] > result["latent_norm_limit"]:
        result["at_bounds"].append("latent_norm")
    sentences = [
        _convergence_warning(info, max_iterations), *_bounds_warnings(result, galaxy_model.latent_dim), psf_warning,
        _flux_warning(result, noise_map, used), _sky_warning(image, noise_map, used),
        _mask_warning(_planar("mask", mask)) if mask is not None else None,
    ]
    result["warnings"] = [sentence for sentence in sentences if sentence]
    if result["warnings"]:
        warnings.warn(GalaxyFitWarning(" ".join(result["warnings"])), stacklevel=2)
    return result


def _square_grid(image, noise_map, used, pixel_scale):
    """lenstronomy ``kwargs_data`` of the stamp on a square grid, its likelihood mask, and the stamp's window in it.

    lenstronomy 1.14's pixel grid (``ImSim.Numerics.RegularGrid``) is square: a rectangular stamp
    is placed in the enclosing square, whose added pixels are left out of χ², with coordinates
    in arcsec from the stamp's own centre (x along columns, y along rows).
    """
    rows, columns = image.shape
    size = max(rows, columns)
    top, left = (size - rows) // 2, (size - columns) // 2
    window = (slice(top, top + rows), slice(left, left + columns))
    grid_image, grid_used = np.zeros((size, size)), np.zeros((size, size))
    grid_noise = np.full((size, size), np.median(noise_map[used]))  # any positive value: these pixels are masked
    grid_image[window], grid_noise[window], grid_used[window] = image, noise_map, used
    kwargs_data = {"image_data": grid_image, "noise_map": grid_noise,
                   "ra_at_xy_0": -(left + (columns - 1) / 2) * pixel_scale,
                   "dec_at_xy_0": -(top + (rows - 1) / 2) * pixel_scale,
                   "transform_pix2angle": np.diag([pixel_scale, pixel_scale])}
    return kwargs_data, grid_used, window


def _restart_points(center, galaxy_model, pixel_scale, restarts, seed, lower, upper):
    """``restarts`` seeded starts ((center_x, center_y) in arcsec, scale in arcsec per decoder pixel,
    latents) around the first one.

    Latents are drawn from the N(0, 1) prior, the centre moved by a Gaussian of 1 image pixel
    (``pixel_scale`` arcsec) per axis, the scale by a log-normal of σ 0.5; all kept inside the
    profile's bounds ``lower`` and ``upper``.
    """
    rng = np.random.default_rng(seed)
    points = []
    for _ in range(restarts):
        latents = np.clip(rng.standard_normal(galaxy_model.latent_dim), lower["z_0"], upper["z_0"])
        shift = rng.normal(0.0, _RESTART_CENTRE_PIXELS * pixel_scale, 2)
        scale = galaxy_model.pixel_scale * np.exp(rng.normal(0.0, _RESTART_LOG_SCALE))
        scale = float(np.clip(scale, lower["scale"], upper["scale"]))
        points.append(((center[0] + shift[0], center[1] + shift[1]), scale, latents))
    return points


def _lm_fit(setup, start, model, band, fit_rotation, max_iterations):
    """One 'LM' run of a FittingSequence from ``start``: the fitted VAE kwargs, LM's info and the FittingSequence."""
    (center_x, center_y), scale, latents = start
    params = vae_source_params(model=model, band=band, center_x=center_x, center_y=center_y, scale=scale,
                               latents=latents, fix_phi_G=not fit_rotation)
    fitting = FittingSequence(setup["kwargs_data_joint"], setup["kwargs_model"], {}, setup["kwargs_likelihood"],
                              {"lens_light_model": [[part] for part in params]})
    _, kwargs_result, info = fitting.fit_sequence([["LM", {"max_iterations": max_iterations}]])[-1]
    return {"kwargs": kwargs_result["kwargs_lens_light"][0], "info": info, "fitting": fitting}


def _at_bounds(kwargs, fitted, lower, upper):
    """Names among ``fitted`` of the parameters within _BOUND_TOLERANCE of their bound range from a bound."""
    names = []
    for name in fitted:
        value = kwargs[name]
        tolerance = _BOUND_TOLERANCE * (upper[name] - lower[name])
        if value - lower[name] <= tolerance or upper[name] - value <= tolerance:
            names.append(name)
    return names


def _convergence_warning(info, max_iterations):
    """A sentence when 'LM' did not converge (None when it did)."""
    if info["converged"]:
        return None
    if info["iterations"] >= max_iterations:
        return (f"'LM' did not converge: it spent its {max_iterations} iterations; raise max_iterations "
                "or add restarts.")
    return (f"'LM' stopped after {info['iterations']} iterations without converging (a stall: its model of χ² "
            "disagrees with χ², e.g. at the positive-flux penalty); try restarts.")


def _bounds_warnings(result, latent_dim):
    """Sentences on parameters at their bounds and on a latent norm beyond the prior (none, one or two)."""
    sentences = []
    names = [name for name in result["at_bounds"] if name != "latent_norm"]
    if names:
        sentences.append(f"Parameters at their bounds: {', '.join(names)}; the fit presses against the profile's "
                         "range, so the galaxy may be unlike any the VAE can draw (or the stamp holds sky or "
                         "neighbours).")
    if "latent_norm" in result["at_bounds"]:
        sentences.append(
            f"Σz² = {result['latent_norm_squared']:.1f} over the {latent_dim} latents is above "
            f"{result['latent_norm_limit']:.1f}, the {_LATENT_NORM_QUANTILE:.1%} quantile of χ² with {latent_dim} "
            "degrees of freedom: the fitted galaxy lies far outside the VAE's N(0, 1) prior, an extrapolation."
        )
    return sentences


def _flux_warning(result, noise_map, used):
    """A sentence when the fitted total flux is far from the stamp's sum (None otherwise)."""
    amp, stamp_flux = float(result["kwargs"]["amp"]), result["stamp_flux"]
    sigma = float(np.sqrt(np.sum(noise_map[used] ** 2)))
    difference = amp - stamp_flux
    if abs(difference) <= _FLUX_TOLERANCE * abs(stamp_flux) or abs(difference) <= _SIGNIFICANCE * sigma:
        return None
    outside = 1.0 - float(result["model_image"].sum()) / amp if amp > 0 else 0.0
    if difference > 0:
        reason = (f"{outside:.0%} of the model's flux falls outside the stamp: the source may be larger than the "
                  "stamp (fit a larger cut-out), or the image may hold unsubtracted sky")
    else:
        reason = ("the model leaves flux in the stamp unexplained: a neighbour, a halo the VAE does not "
                  "reproduce, or unsubtracted sky")
    comparison = f"{amp / stamp_flux:.2f}×" if stamp_flux > 0 else "far from"
    return (f"The fitted total flux {amp:.4g} is {comparison} the stamp's sum {stamp_flux:.4g} (± {sigma:.2g}); "
            f"{reason}.")


def _sky_warning(image, noise_map, used):
    """A sentence when the median of the border pixels is significantly off zero (None otherwise)."""
    border = np.zeros(image.shape, dtype=bool)
    border[:_BORDER_WIDTH], border[-_BORDER_WIDTH:], border[:, :_BORDER_WIDTH], border[:, -_BORDER_WIDTH:] = (True,) * 4
    border &= used
    count = int(border.sum())
    if count < _MIN_BORDER_PIXELS:
        return None
    median = float(np.median(image[border]))
    sigma = _MEDIAN_EFFICIENCY * float(np.median(noise_map[border])) / np.sqrt(count)
    if abs(median) <= _SIGNIFICANCE * sigma:
        return None
    side = "above" if median > 0 else "below"
    return (f"The median of the {count} border pixels is {median:.3g}, {abs(median) / sigma:.0f} σ {side} zero for "
            "pure noise: a sky pedestal, or a galaxy filling the stamp; fit a sky-subtracted image, cut larger than "
            "the galaxy.")


def _mask_warning(used):
    """A sentence when the mask leaves out the stamp's central pixel (None otherwise)."""
    if used[used.shape[0] // 2, used.shape[1] // 2]:
        return None
    return ("The mask leaves out the stamp's central pixel: nonzero means use the pixel; a bad-pixel mask "
            "(nonzero = bad) must be inverted.")
