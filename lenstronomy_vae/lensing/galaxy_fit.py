"""Fit one unlensed galaxy stamp with a 'VAE' profile: ``fit_galaxy(image, noise, psf)``."""

import numpy as np
from lenstronomy.Workflow.fitting_sequence import FittingSequence

from lenstronomy_vae.lensing.parameters import check_data, latent_prior, vae_source_params
from lenstronomy_vae.networks.galaxy_model import load_galaxy_model


def _check_psf(psf):
    psf = np.asarray(psf, dtype=float)
    if psf.ndim != 2 or psf.shape[0] != psf.shape[1] or psf.shape[0] % 2 == 0:
        raise ValueError(f"psf must be a square 2-D kernel of odd size; got shape {psf.shape}")
    if not np.all(np.isfinite(psf)) or psf.sum() <= 0:
        raise ValueError("psf must be finite with a positive sum")
    return psf / psf.sum()


def fit_galaxy(image, noise, psf, pixel_scale, model=None, band=None, max_iterations=50, fit_rotation=False,
               seed=0):
    """Fit a galaxy stamp with a VAE profile by Levenberg–Marquardt (lenstronomy 'LM' step).

    The fit starts from the mean galaxy (latents 0) at the flux-weighted centroid, with the
    model's training pixel scale; the latents carry a standard-normal prior and the amplitude is
    solved linearly.

    Args:
        image: 2-D stamp, any flux units per pixel.
        noise: per-pixel noise standard deviation, same units: a number or an array like ``image``.
        psf: odd-sized square PSF kernel sampled at the image's pixel scale (normalised here).
        pixel_scale: arcsec per image pixel.
        model: shipped model name or ``.keras`` path; None for the default model.
        band: band of a multi-band model.
        max_iterations: LM iteration budget.
        fit_rotation: also fit ``phi_G`` (radians); off by default, the latents carry orientation.
        seed: seed of numpy's global generator, which lenstronomy uses.

    Returns:
        dict: ``kwargs`` (the VAE parameters, ``amp`` = total flux in image units, centres in
        arcsec from the stamp centre, x along columns and y along rows), ``model_image``,
        ``chi2``, ``reduced_chi2`` (χ² of the pixels / number of pixels), ``iterations``,
        ``seconds``.

    Raises:
        ValueError: NaN or infinite pixels, a non-positive noise, a bad PSF kernel.
    """
    image = np.asarray(image, dtype=float)
    if image.ndim != 2 or image.shape[0] != image.shape[1]:
        raise ValueError(f"image must be a square 2-D stamp; got shape {image.shape}")
    try:
        noise_map = np.broadcast_to(np.asarray(noise, dtype=float), image.shape).copy()
    except ValueError:
        raise ValueError(f"noise must be a number or an array of the image's shape {image.shape}; "
                         f"got shape {np.shape(noise)}") from None
    num_pix = image.shape[0]
    origin = -(num_pix - 1) / 2 * pixel_scale
    kwargs_data = {"image_data": image, "noise_map": noise_map, "ra_at_xy_0": origin, "dec_at_xy_0": origin,
                   "transform_pix2angle": np.diag([pixel_scale, pixel_scale])}
    check_data(kwargs_data)
    kwargs_psf = {"psf_type": "PIXEL", "kernel_point_source": _check_psf(psf)}
    galaxy_model = load_galaxy_model(model)
    coordinates = (np.arange(num_pix) - (num_pix - 1) / 2) * pixel_scale
    weights = np.clip(image, 0, None)
    total = weights.sum()
    center_x = float((weights.sum(axis=0) @ coordinates) / total) if total > 0 else 0.0
    center_y = float((weights.sum(axis=1) @ coordinates) / total) if total > 0 else 0.0
    params = vae_source_params(model=model, band=band, center_x=center_x, center_y=center_y,
                               scale=galaxy_model.pixel_scale, fix_phi_G=not fit_rotation)
    kwargs_model = {"lens_light_model_list": ["VAE"],
                    "lens_light_profile_kwargs_list": [{"model": model, "band": band}]}
    kwargs_likelihood = {"check_positive_flux": True, "prior_lens_light": latent_prior(0, model=model, band=band)}
    kwargs_data_joint = {"multi_band_list": [[kwargs_data, kwargs_psf, {"supersampling_factor": 1}]],
                         "multi_band_type": "single-band"}
    np.random.seed(seed)
    fitting = FittingSequence(kwargs_data_joint, kwargs_model, {}, kwargs_likelihood,
                              {"lens_light_model": [[part] for part in params]})
    _, kwargs_result, info = fitting.fit_sequence([["LM", {"max_iterations": max_iterations}]])[-1]
    image_fit = fitting.likelihood_class.image_likelihood.imSim
    model_image, _, _, _ = image_fit.image_linear_solve(kwargs_lens_light=kwargs_result["kwargs_lens_light"])
    pixel_chi2 = float(np.sum(((image - model_image) / noise_map) ** 2))
    return {
        "kwargs": kwargs_result["kwargs_lens_light"][0],
        "model_image": model_image,
        "chi2": pixel_chi2,
        "reduced_chi2": pixel_chi2 / image.size,
        "iterations": info["iterations"],
        "seconds": info["seconds"],
    }
