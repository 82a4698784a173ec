"""Derivatives of decoded galaxies with respect to the latent coordinates.

Forward-mode autodiff through the Keras decoder (one batched pass of d tangents, much cheaper
than reverse mode for a 64×64 output), then the chain rule through the inverse normalisation,
the clip at zero flux and the normalisation to unit total flux.
"""

import functools

import numpy as np
import tensorflow as tf


@functools.lru_cache(maxsize=8)
def _jvp_graph(decoder, latent_dim):
    """Compiled function z (d,) → (decoder(z), ∂decoder/∂z as (d, H, W, C))."""

    @tf.function(input_signature=[tf.TensorSpec((latent_dim,), tf.float32)])
    def jvp(z):
        batch = tf.tile(z[None], (latent_dim, 1))
        with tf.autodiff.ForwardAccumulator(batch, tf.eye(latent_dim)) as accumulator:
            output = decoder(batch, training=False)
        return output[0], accumulator.jvp(output)

    return jvp


def unit_flux_stamp_jacobian(galaxy_model, z, band_index=0):
    """The unit-flux stamp of one band and its derivatives with respect to the latents.

    Args:
        galaxy_model: a :class:`lenstronomy_vae.models.GalaxyModel`.
        z: latent vector (d,).
        band_index: which band of a multi-band model.

    Returns:
        (stamp (H, W), jacobian (H, W, d)): the decoded stamp normalised to unit sum (row along
        +y, column along +x) and ∂stamp/∂z_i. Pixels clipped to zero flux have zero derivative.
    """
    z = galaxy_model.check_latents(z)[0]
    normalized, tangents = _jvp_graph(galaxy_model.vae.decoder, galaxy_model.latent_dim)(tf.constant(z))
    y = normalized.numpy()[..., band_index].astype(np.float64)
    dy = np.moveaxis(tangents.numpy()[..., band_index].astype(np.float64), 0, -1)
    normalization = galaxy_model.vae.normalization
    flux = normalization.inverse(y[..., None])[..., 0]
    positive = flux > 0
    # d/dy [sinh(arctanh y)] = (1 - y²)^(-3/2); zero where the flux is clipped at 0.
    slope = np.where(positive, (1.0 - np.minimum(y**2, 1.0 - 1e-12)) ** -1.5, 0.0) / (
        normalization.beta / normalization.band_max[band_index]
    )
    flux = np.where(positive, flux, 0.0)
    dflux = slope[..., None] * dy
    total = flux.sum()
    if total <= 0:
        return np.zeros_like(flux), np.zeros_like(dflux)
    stamp = flux / total
    jacobian = dflux / total - stamp[..., None] * (dflux.sum(axis=(0, 1)) / total)
    return stamp, jacobian
