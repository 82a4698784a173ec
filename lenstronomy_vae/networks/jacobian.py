"""Derivatives of decoded galaxies with respect to the latent coordinates.

Forward-mode differentiation of the decoder (d tangent directions, much cheaper than reverse
mode for a 64×64 output): by :meth:`NumpyDecoder.jacobian` where the model has its numpy
decoder, else by TensorFlow's forward-mode autodiff through the Keras decoder (one batched
pass of d tangents); then the chain rule through the inverse normalisation, the clip at zero
flux and the normalisation to unit total flux.
"""

import functools

import numpy as np
import tensorflow as tf

from lenstronomy_vae.networks.decoding import PEAK_LIMIT, to_image_units


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


def decoder_jacobian(galaxy_model, z):
    """The normalised decoder output at one latent vector and its derivatives, float32.

    By the model's :class:`~lenstronomy_vae.networks.numpy_decoder.NumpyDecoder` where it has one, else by
    TensorFlow forward mode; both agree to float32 rounding.

    Args:
        galaxy_model: a :class:`lenstronomy_vae.networks.galaxy_model.GalaxyModel`.
        z: latent vector (d,), float32, checked.

    Returns:
        (output (H, W, C), jacobian (d, H, W, C)): decoder(z) and ∂decoder/∂z_i.
    """
    if galaxy_model._decode_numpy is not None:
        return galaxy_model._decode_numpy.jacobian(z)
    output, tangents = _jvp_graph(galaxy_model.vae.decoder, galaxy_model.latent_dim)(tf.constant(z))
    return output.numpy(), tangents.numpy()


def unit_flux_stamp_jacobian(galaxy_model, z, band_index=0):
    """The unit-flux stamp of one band and its derivatives with respect to the latents.

    The decoder's derivatives come from :func:`decoder_jacobian` (numpy forward mode, or
    TensorFlow's for a decoder that NumpyDecoder cannot run), in float32; the chain rule
    after it runs in float64.

    Args:
        galaxy_model: a :class:`lenstronomy_vae.networks.galaxy_model.GalaxyModel`.
        z: latent vector (d,).
        band_index: which band of a multi-band model.

    Returns:
        (stamp (H, W), jacobian (H, W, d)): the decoded stamp normalised to unit sum (row along
        +y, column along +x) and ∂stamp/∂z_i, float64. Pixels clipped to zero flux have zero
        derivative. The jacobian is a view of a (d, H, W) array: each ``jacobian[..., i]`` is
        contiguous.
    """
    z = galaxy_model.check_latents(z)[0]
    normalized, tangents = decoder_jacobian(galaxy_model, z)
    normalization = galaxy_model.vae.normalization
    flux = to_image_units(normalization, normalized.astype(np.float64))[..., band_index]
    y = normalized[..., band_index].astype(np.float64)
    dy = tangents[..., band_index]  # (d, H, W), float32, cast to float64 by the product below
    positive = flux > 0
    # d/dy [sinh(arctanh y)] = (1 - y²)^(-3/2); zero where the flux is clipped, at 0 or where the
    # inverse normalisation saturates (y at the cap: there a change of y changes nothing).
    saturation = normalization.saturation(PEAK_LIMIT)
    responsive = positive & (y < saturation)
    slope = np.where(responsive, (1.0 - np.minimum(y**2, saturation**2)) ** -1.5, 0.0) / (
        normalization.beta / normalization.band_max[band_index]
    )
    flux = np.where(positive, flux, 0.0)
    total = flux.sum()
    if total <= 0:
        return np.zeros_like(flux), np.zeros((*flux.shape, len(z)))
    stamp = flux / total
    # ∂stamp/∂z_i = dflux_i / total − stamp · Σ dflux_i / total, with dflux_i = slope · dy_i;
    # computed as (d, H, W) and returned as a (H, W, d) view, so each [..., i] is contiguous.
    jacobian = np.multiply(dy, slope / total, dtype=np.float64)
    jacobian -= np.multiply.outer(jacobian.sum(axis=(1, 2)), stamp)
    return stamp, np.moveaxis(jacobian, 0, -1)
