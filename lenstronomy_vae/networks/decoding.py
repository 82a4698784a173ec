"""The one path from latent vectors to galaxy images in image units, and from stamps to latent vectors.

Every consumer of a decoder goes through :func:`to_image_units`: the lenstronomy profile (through
:class:`~lenstronomy_vae.networks.galaxy_model.GalaxyModel`), the deblender's reconstructions, field
mode and the MAP loss (on tensors). Decoded values are capped at :data:`PEAK_LIMIT` band_max.
"""

import numpy as np

from lenstronomy_vae.utils.checks import check_finite

# Decoded pixels are capped at this many times a band's band_max: the brightest pixel of the 11,000
# LSST-like training galaxies is 51 band_max (i band). Uncapped, the deblender's mean |Δf/f| on 1,000
# test blends is 280 % (a few outputs beyond 1 → fluxes ×100); capped, 60 %, with the median unchanged.
PEAK_LIMIT = 50.0


def to_image_units(normalization, normalized):
    """Image units from normalised decoder outputs (numpy or tensor, (..., bands)), capped at :data:`PEAK_LIMIT`.

    Not clipped at zero: the decoder's faint pixels scatter around zero and average out over a
    stamp, where clipping them adds flux (+8 % in the i band of the LSST-like model's held-out
    galaxies, against −1 % unclipped). The lenstronomy profile clips its stamp itself.
    """
    return normalization.inverse(normalized, peak_limit=PEAK_LIMIT)


def checked_stamps(network, stamps):
    """Stamps as a float64 batch (n, H, W, bands) for ``network``, and whether one stamp was given.

    Raises:
        ValueError: a wrong shape (a channels-first batch is named as such) or NaN pixels.
    """
    stamps = np.asarray(stamps, dtype=np.float64)
    config = network.config
    expected = (config.image_size, config.image_size, config.num_bands)
    single = stamps.shape == expected
    if single:
        stamps = stamps[None]
    if stamps.ndim == 4 and stamps.shape[1:] == (config.num_bands, config.image_size, config.image_size) \
            and stamps.shape[1:] != expected:
        raise ValueError(f"stamps have shape {stamps.shape}, bands first; the model takes bands last, "
                         f"(n, {', '.join(map(str, expected))}): pass np.moveaxis(stamps, 1, -1)")
    if stamps.ndim != 4 or stamps.shape[1:] != expected:
        raise ValueError(f"stamps must have shape (n, {', '.join(map(str, expected))}) or "
                         f"({', '.join(map(str, expected))}) for model bands {config.bands}; got {stamps.shape}")
    check_finite("stamps", stamps, "stamp, row, column, band")
    return stamps, single


def encode(network, stamps, batch_size=256):
    """Encoder means (n, latent_dim) of stamps (n, H, W, bands) in image units; (latent_dim,) for one stamp.

    Args:
        network: a :class:`~lenstronomy_vae.networks.vae.GalaxyVAE` (or deblender).
        stamps: (n, H, W, bands) or one (H, W, bands) stamp, image units, bands last.
        batch_size: stamps per encoder call.
    """
    stamps, single = checked_stamps(network, stamps)
    means = _encoder_means(network, stamps, batch_size)
    return means[0] if single else means


def _encoder_means(network, stamps, batch_size):
    """Encoder means (n, latent_dim) of checked stamps (n, H, W, bands) in image units."""
    means = []
    for start in range(0, len(stamps), batch_size):
        batch = network.normalization.normalize(stamps[start:start + batch_size]).astype(np.float32)
        means.append(np.asarray(network.encoder(batch, training=False)[0]))
    return np.concatenate(means)


def decode(network, latents, batch_size=256):
    """Decoded intrinsic stamps (n, H, W, bands) in image units (float64) of latent vectors (n, latent_dim)."""
    latents = np.atleast_2d(np.asarray(latents, dtype=np.float32))
    outputs = [np.asarray(network.decoder(latents[start:start + batch_size], training=False), dtype=np.float64)
               for start in range(0, len(latents), batch_size)]
    return to_image_units(network.normalization, np.concatenate(outputs))


def reconstruct(network, observed, batch_size=256):
    """Decoded intrinsic stamps (image units) of the encoder means of observed stamps.

    Args:
        network: a :class:`~lenstronomy_vae.networks.vae.GalaxyVAE` (or deblender).
        observed: (n, H, W, bands), or one (H, W, bands) stamp, in image units.

    Returns:
        float64 array of the input's shape, capped at :data:`PEAK_LIMIT` band_max, not clipped at zero.
    """
    stamps, single = checked_stamps(network, observed)
    images = decode(network, _encoder_means(network, stamps, batch_size), batch_size)
    return images[0] if single else images
