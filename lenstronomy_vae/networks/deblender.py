"""Deblender: an encoder trained on blended scenes, mapping into a frozen VAE decoder's latent space.

As in Arcelin et al. (2021), the VAE first learns isolated galaxies; a second encoder then
learns, from blends whose target galaxy sits at the stamp centre, the latent vector from
which the *frozen* decoder draws that target alone. An optional latent loss pulls the
deblender's latent mean towards the VAE encoder's latent mean of the isolated target.

The decoder draws the intrinsic galaxy (no PSF), in the VAE's normalised units; the deblended
image in survey units is :meth:`Deblender.deblend`'s output convolved with the survey PSF
(:func:`lenstronomy_vae.sims.rendering.convolve_bands`).
"""

import keras
import numpy as np
import tensorflow as tf

from lenstronomy_vae.networks.decoding import encode, reconstruct
from lenstronomy_vae.networks.vae import GalaxyVAE


@keras.saving.register_keras_serializable(package="lenstronomy_vae")
class Deblender(GalaxyVAE):
    """A :class:`GalaxyVAE` whose decoder is frozen and whose encoder reads blended scenes.

    Training data are tuples ``(blend, target, weight, latent_target)`` of normalised arrays:
    the encoder sees the blend; the decoder output is scored against the isolated intrinsic
    target with χ² weights ``weight``; ``latent_target`` (n, latent_dim) is the VAE encoder's
    mean for the isolated target, used when ``latent_weight`` > 0.

    Args:
        config, normalization, kl_weight, seed: as for :class:`GalaxyVAE` (the VAE's own).
        latent_weight: weight of ``Σ (z_mean − latent_target)²`` in the loss (0: no latent loss).
    """

    def __init__(self, config, normalization, kl_weight=1.0, seed=None, latent_weight=0.0, **kwargs):
        if kwargs.pop("augment", False):
            raise ValueError("a deblender cannot be trained with augment=True: its latent targets belong to the "
                             "stamps as drawn, not turned")
        super().__init__(config, normalization, kl_weight=kl_weight, seed=seed, **kwargs)
        self.latent_weight = float(latent_weight)
        self.decoder.trainable = False
        self.latent_tracker = keras.metrics.Mean(name="latent")

    @classmethod
    def from_vae(cls, vae, latent_weight=0.0, seed=None):
        """A deblender with the VAE's decoder (frozen) and, as a starting point, its encoder."""
        deblender = cls(vae.config, vae.normalization, kl_weight=float(np.asarray(vae.kl_weight)), seed=seed,
                        latent_weight=latent_weight, name="deblender")
        deblender.encoder.set_weights(vae.encoder.get_weights())
        deblender.decoder.set_weights(vae.decoder.get_weights())
        return deblender

    @property
    def metrics(self):
        return [*super().metrics, self.latent_tracker]

    def _loss_terms(self, data, training):
        blend, target, weight, latent_target = data
        loss, chi2, kl, z_mean = self._vae_terms(blend, target, weight, training=training)
        latent = tf.reduce_mean(tf.reduce_sum(tf.square(z_mean - latent_target), axis=1))
        self.latent_tracker.update_state(latent)
        return loss + self.latent_weight * latent, chi2, kl

    def get_config(self):
        return {**super().get_config(), "latent_weight": self.latent_weight}

    def encode(self, blends, batch_size=256):
        """Latent means (n, latent_dim) of blended stamps (n, H, W, bands) in image units, bands last.

        One stamp (H, W, bands) gives one latent vector (latent_dim,).
        """
        return encode(self, blends, batch_size)

    def deblend(self, blends, batch_size=256):
        """Intrinsic (no PSF) image of each blend's central galaxy, (n, H, W, bands) in image units.

        Takes blended stamps (n, H, W, bands) in image units, bands last, or one (H, W, bands)
        stamp, for which it returns one image (H, W, bands).
        """
        return reconstruct(self, blends, batch_size=batch_size)
