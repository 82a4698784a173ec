"""Helpers to set up lenstronomy fits (FittingSequence) with a 'VAE' light component."""

import numpy as np

from lenstronomy_vae.lensing.profile import VAEProfile, latent_names
from lenstronomy_vae.utils.checks import check_positive

# Step sizes of the initial sampling distribution (kwargs_sigma), in the parameters' units.
_LATENT_SIGMA = 0.5  # half the prior width: PSO/MCMC explore the bulk of N(0, 1)
_CENTER_SIGMA_PIXELS = 2.0  # decoder pixels
_SCALE_SIGMA_FRACTION = 0.1  # of the initial scale
_PHI_SIGMA = 0.3  # radians
_AMP_SIGMA_FRACTION = 0.5  # of the initial amp (only sampled without the linear solver)


def vae_source_params(
    model=None,
    band=None,
    amp=1.0,
    center_x=0.0,
    center_y=0.0,
    scale=None,
    phi_G=0.0,
    latents=None,
    fix_scale=False,
    fix_phi_G=False,
    fix_latents=False,
):
    """Initial values, step sizes, fixed values and bounds of one 'VAE' component.

    Use them as one entry of ``kwargs_params['source_model']`` (or ``'lens_light_model'``),
    with ``{'model': model, 'band': band}`` as its entry of
    ``kwargs_model['source_light_profile_kwargs_list']``.

    Args:
        model: model name (shipped or yours) or ``.keras`` path; None for the default model.
        band: band name or index, required for a multi-band model.
        amp: initial total flux, data units (overwritten by lenstronomy's linear solver).
        center_x: initial x of the galaxy centre, arcsec.
        center_y: initial y of the galaxy centre, arcsec.
        scale: initial arcsec per decoder pixel; None for the model's training pixel scale.
        phi_G: initial counter-clockwise rotation, radians.
        latents: initial latent vector (length d); None for the prior mean, zeros.
        fix_scale: hold ``scale`` fixed at its initial value.
        fix_phi_G: hold ``phi_G`` fixed at its initial value.
        fix_latents: hold every latent fixed at its initial value.

    Returns:
        (kwargs_init, kwargs_sigma, kwargs_fixed, kwargs_lower, kwargs_upper), dicts for one
        component.

    Raises:
        ValueError: wrong number of latents, or an initial value outside the profile's bounds.
    """
    profile = VAEProfile(model=model, band=band)
    names = latent_names(profile.latent_dim)
    if latents is None:
        latents = [0.0] * profile.latent_dim
    latents = [float(z) for z in latents]
    if len(latents) != profile.latent_dim:
        raise ValueError(
            f"model {profile.galaxy_model.name!r} has a {profile.latent_dim}-dimensional latent "
            f"space; got {len(latents)} initial latents"
        )
    if scale is None:
        scale = profile.pixel_scale
    scale = float(scale)

    kwargs_init = {
        "amp": float(amp), "center_x": float(center_x), "center_y": float(center_y),
        "scale": scale, "phi_G": float(phi_G), **dict(zip(names, latents)),
    }
    kwargs_lower = dict(profile.lower_limit_default)
    kwargs_upper = dict(profile.upper_limit_default)
    outside = {
        name: value
        for name, value in kwargs_init.items()
        if not kwargs_lower[name] <= value <= kwargs_upper[name]
    }
    if outside:
        raise ValueError(
            "initial values outside the VAE profile's bounds: "
            + ", ".join(f"{n}={v} not in [{kwargs_lower[n]}, {kwargs_upper[n]}]" for n, v in outside.items())
        )
    kwargs_sigma = {
        "amp": _AMP_SIGMA_FRACTION * max(abs(float(amp)), 1e-3),
        "center_x": _CENTER_SIGMA_PIXELS * scale,
        "center_y": _CENTER_SIGMA_PIXELS * scale,
        "scale": _SCALE_SIGMA_FRACTION * scale,
        "phi_G": _PHI_SIGMA,
        **{name: _LATENT_SIGMA for name in names},
    }
    kwargs_fixed = {}
    if fix_scale:
        kwargs_fixed["scale"] = scale
    if fix_phi_G:
        kwargs_fixed["phi_G"] = float(phi_G)
    if fix_latents:
        kwargs_fixed.update(zip(names, latents))
    return kwargs_init, kwargs_sigma, kwargs_fixed, kwargs_lower, kwargs_upper


def latent_prior(index, model=None, band=None, sigma=1.0):
    """The Gaussian prior N(0, sigma²) of each VAE latent, for lenstronomy's kwargs_likelihood.

    Args:
        index: position of the 'VAE' component in its light model list.
        model: model name (shipped or yours) or ``.keras`` path; None for the default model.
        band: band name or index, required for a multi-band model.
        sigma: the prior's standard deviation; 1 is the VAE's own prior, below 1 a tighter one
            (a stronger pull towards the mean galaxy).

    Returns:
        ``[[index, 'z_0', 0.0, sigma], ...]`` for ``kwargs_likelihood['prior_source']`` (or
        ``'prior_lens_light'``); concatenate the lists of several components.

    Raises:
        ValueError: ``sigma`` not a finite positive number.
    """
    check_positive("sigma", sigma)
    profile = VAEProfile(model=model, band=band)
    return [[int(index), name, 0.0, float(sigma)] for name in latent_names(profile.latent_dim)]


def check_data(kwargs_data):
    """Validate lenstronomy ``kwargs_data`` before a fit; lenstronomy itself would fit NaNs silently.

    Args:
        kwargs_data: lenstronomy ImageData keyword arguments (``image_data``, ``background_rms``,
            ``exposure_time``, optional ``noise_map``).

    Raises:
        ValueError: naming the problem: a non-2-D or non-finite image (with the count and first
            position of bad pixels), a non-positive background rms or exposure time, or a noise
            map of the wrong shape or with non-positive values.
    """
    image = np.asarray(kwargs_data.get("image_data"), dtype=float)
    if image.ndim != 2:
        raise ValueError(f"image_data must be a 2-D image; got shape {image.shape}")
    bad = ~np.isfinite(image)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"image_data has {int(bad.sum())} NaN or infinite pixel(s) (first at row, column {first}); "
            "replace them by any finite value and mask those pixels (image_likelihood_mask_list, or an "
            "infinite noise_map value)"
        )
    noise_map = kwargs_data.get("noise_map")
    if noise_map is not None:
        noise_map = np.asarray(noise_map, dtype=float)
        if noise_map.shape != image.shape:
            raise ValueError(f"noise_map has shape {noise_map.shape} but image_data has {image.shape}")
        if not np.all(noise_map > 0):
            bad = int(np.sum(~(noise_map > 0)))
            raise ValueError(f"noise_map must be positive (infinite masks a pixel); {bad} value(s) are NaN, zero or "
                             f"negative, the smallest being {np.nanmin(noise_map)}")
        return
    for key in ("background_rms", "exposure_time"):
        value = np.asarray(kwargs_data.get(key, np.nan), dtype=float)
        if not np.all(value > 0):
            raise ValueError(f"{key} must be positive; got {kwargs_data.get(key)!r}")
