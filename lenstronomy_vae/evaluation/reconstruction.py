"""Reconstruction quality of a trained VAE on held-out galaxies: SSIM and relative flux errors."""

import numpy as np

from lenstronomy_vae.evaluation.metrics import relative_flux_error, ssim
from lenstronomy_vae.networks.decoding import reconstruct


def reconstruction_metrics(vae, galaxies):
    """Per-galaxy SSIM and relative flux error of reconstructions against the intrinsic truth.

    Args:
        vae: a trained :class:`lenstronomy_vae.networks.vae.GalaxyVAE`.
        galaxies: a :class:`lenstronomy_vae.sims.galaxies.GalaxySet` not used in training.

    Returns:
        dict of arrays (n, C): ``ssim`` and ``flux_error`` ((Σ recon − Σ true) / Σ true), and the
        medians ``median_ssim``, ``median_abs_flux_error`` over every galaxy and band.
    """
    recon = reconstruct(vae, galaxies.observed)
    truth = galaxies.intrinsic.astype(np.float64)
    bands = truth.shape[-1]
    scores = np.array([[ssim(recon[i, ..., b], truth[i, ..., b]) for b in range(bands)] for i in range(len(truth))])
    flux_error = relative_flux_error(np.moveaxis(recon, -1, 1), np.moveaxis(truth, -1, 1))
    return {
        "ssim": scores,
        "flux_error": flux_error,
        "median_ssim": float(np.median(scores)),
        "median_abs_flux_error": float(np.median(np.abs(flux_error))),
        "median_flux_error": float(np.median(flux_error)),
    }
