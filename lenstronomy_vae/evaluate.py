"""Reconstruction quality of a trained VAE on held-out galaxies."""

import numpy as np

from lenstronomy_vae.metrics import relative_flux_error, ssim

# Decoded pixels are capped at this many times a band's band_max: the brightest pixel of the 11,000
# LSST-like training galaxies is 51 band_max (i band). Uncapped, the deblender's mean |Δf/f| on 1,000
# test blends is 280 % (a few outputs beyond 1 → fluxes ×100); capped, 60 %, with the median unchanged.
PEAK_LIMIT = 50.0


def reconstruct(vae, observed, batch_size=256):
    """Decoded intrinsic stamps (image units) from the encoder means of observed stamps (n, H, W, C).

    Not clipped at zero: the decoder's faint pixels scatter around zero and average out over a
    stamp, where clipping them adds flux (+8 % in the i band of the LSST-like model's held-out
    galaxies, against −1 % unclipped). Capped at :data:`PEAK_LIMIT` band_max.
    """
    normalization = vae.normalization
    outputs = []
    for start in range(0, len(observed), batch_size):
        batch = normalization.normalize(np.asarray(observed[start : start + batch_size], dtype=np.float64))
        outputs.append(np.asarray(vae(batch.astype(np.float32), training=False), dtype=np.float64))
    return normalization.inverse(np.concatenate(outputs), peak_limit=PEAK_LIMIT)


def reconstruction_metrics(vae, galaxies):
    """Per-galaxy SSIM and relative flux error of reconstructions against the intrinsic truth.

    Args:
        vae: a trained :class:`lenstronomy_vae.vae.GalaxyVAE`.
        galaxies: a :class:`lenstronomy_vae.simulate.GalaxySet` not used in training.

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
