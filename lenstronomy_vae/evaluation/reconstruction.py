"""Reconstruction quality of a trained VAE on held-out galaxies: SSIM and relative flux errors."""

import numpy as np

from lenstronomy_vae.evaluation.metrics import flux_errors, ssim_scores
from lenstronomy_vae.networks.decoding import reconstruct


def reconstruction_metrics(vae, galaxies):
    """Per-galaxy SSIM and relative flux error of reconstructions against the intrinsic truth.

    Args:
        vae: a trained :class:`lenstronomy_vae.networks.vae.GalaxyVAE`.
        galaxies: a :class:`lenstronomy_vae.sims.galaxies.GalaxySet` not used in training.

    Returns:
        dict of dimensionless arrays (n, C): ``ssim``, the SSIM (scikit-image, Gaussian σ = 1.5 px, border of
        5 px excluded) per band, and ``flux_error`` ((Σ recon − Σ true) / Σ true); and the medians
        ``median_ssim``, ``median_abs_flux_error``, ``median_flux_error`` over every galaxy and band.
    """
    recon = reconstruct(vae, galaxies.observed)
    truth = galaxies.intrinsic.astype(np.float64)
    scores = np.stack([ssim_scores(recon, truth, band) for band in range(truth.shape[-1])], axis=-1)
    flux_error = flux_errors(recon, truth)
    return {
        "ssim": scores,
        "flux_error": flux_error,
        "median_ssim": float(np.median(scores)),
        "median_abs_flux_error": float(np.median(np.abs(flux_error))),
        "median_flux_error": float(np.median(flux_error)),
    }
