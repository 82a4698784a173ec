"""Deblender: an encoder trained on blended scenes, mapping into a frozen VAE decoder's latent space.

As in Arcelin et al. (2021), the VAE first learns isolated galaxies; a second encoder then
learns, from blends whose target galaxy sits at the stamp centre, the latent vector from
which the *frozen* decoder draws that target alone. An optional latent loss pulls the
deblender's latent mean towards the VAE encoder's latent mean of the isolated target.

The decoder draws the intrinsic galaxy (no PSF), in the VAE's normalised units; the deblended
image in survey units is :meth:`Deblender.deblend`'s output convolved with the survey PSF
(:func:`lenstronomy_vae.rendering.convolve_bands`).
"""

import keras
import numpy as np
import tensorflow as tf

from lenstronomy_vae.evaluate import reconstruct
from lenstronomy_vae.training import KLWarmup, cosine_adam, fit_resumable, training_arrays
from lenstronomy_vae.vae import GalaxyVAE
from lenstronomy_vae.validation import check_finite


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
        """Latent means (n, latent_dim) of blended stamps (n, H, W, bands) in image units."""
        return _encoder_means(self, blends, batch_size)

    def deblend(self, blends, batch_size=256):
        """Intrinsic (no PSF) image of each blend's central galaxy, (n, H, W, bands) in image units."""
        return reconstruct(self, blends, batch_size=batch_size)


def _encoder_means(vae, images, batch_size=256):
    """Encoder means (n, latent_dim) of stamps (n, H, W, bands) in image units."""
    images = np.asarray(images)
    expected = (vae.config.image_size, vae.config.image_size, vae.config.num_bands)
    if images.ndim != 4 or images.shape[1:] != expected:
        raise ValueError(f"stamps must have shape (n, {', '.join(map(str, expected))}) for model bands "
                         f"{vae.config.bands}; got {images.shape}")
    check_finite("stamps", images, "stamp, row, column, band")
    means = []
    for start in range(0, len(images), batch_size):
        batch = vae.normalization.normalize(images[start:start + batch_size].astype(np.float64)).astype(np.float32)
        means.append(np.asarray(vae.encoder(batch, training=False)[0]))
    return np.concatenate(means)


def deblender_arrays(blends, vae):
    """(blend, target, weight, latent_target) float32 training arrays of a BlendSet for a VAE's deblender."""
    blend, target, weight = training_arrays(blends, vae.normalization, observed=blends.blend)
    return blend, target, weight, _encoder_means(vae, blends.target_noisy).astype(np.float32)


def train_deblender(vae, train_set, validation_set, epochs, checkpoint_dir, latent_weight=0.0, batch_size=64,
                    learning_rate=1e-3, seed=0, strategy=None, verbose=2):
    """Train (or resume training) a :class:`Deblender` on blends for a trained VAE.

    The encoder starts from the VAE's encoder; the decoder stays frozen. The KL weight is the
    VAE's final one from the first epoch (the decoder already knows its latent space).

    Args:
        vae: a trained :class:`GalaxyVAE` whose bands and stamp size match the blends.
        train_set, validation_set: :class:`lenstronomy_vae.blends.BlendSet` instances.
        epochs: total epochs planned (a resumed run trains only the remainder).
        checkpoint_dir: checkpoints and ``state.json``; an existing checkpoint is resumed.
        latent_weight: weight of the latent-space loss (0 disables it).
        batch_size, learning_rate, seed, strategy, verbose: as in
            :func:`lenstronomy_vae.training.train_vae`.

    Returns:
        (deblender, state).
    """
    expected = (vae.config.image_size, vae.config.image_size, vae.config.num_bands)
    if train_set.blend.shape[1:] != expected:
        raise ValueError(f"blends have shape {train_set.blend.shape[1:]}; the VAE expects {expected} "
                         f"(bands {vae.config.bands})")

    def build(steps_per_epoch):
        deblender = Deblender.from_vae(vae, latent_weight=latent_weight, seed=seed)
        deblender.compile(optimizer=cosine_adam(learning_rate, epochs * steps_per_epoch))
        return deblender

    def arrays(deblender):
        return deblender_arrays(train_set, vae), deblender_arrays(validation_set, vae)

    final_kl = float(np.asarray(vae.kl_weight))
    return fit_resumable(build, arrays, len(train_set), epochs, checkpoint_dir, batch_size=batch_size, seed=seed,
                         strategy=strategy, callbacks=[KLWarmup(final_kl, final_kl, 1)], verbose=verbose)


def train_and_ship_deblender(data, vae, name, weights_dir, checkpoint_dir, epochs, latent_weight=0.0, held_out=500,
                             validation=500, batch_size=64, learning_rate=1e-3, seed=0):
    """Train a deblender on a simulated blend set, measure it on held-out scenes, ship it.

    Args:
        data: HDF5 file of a :class:`lenstronomy_vae.blends.BlendSet`.
        vae: shipped VAE name or ``.keras`` path whose decoder the deblender uses.
        name: model name in the manifest.
        weights_dir: directory of the shipped ``.keras`` files and ``manifest.json``.
        checkpoint_dir: checkpoints; an interrupted run resumes from here.
        epochs, latent_weight, batch_size, learning_rate, seed: as in :func:`train_deblender`.
        held_out, validation: scenes kept for the final metrics and for the validation loss.

    Returns:
        dict: held-out σ(Δe), flux errors, SSIM, cosine similarity, losses, seconds, hardware.
    """
    from lenstronomy_vae.blends import BlendSet
    from lenstronomy_vae.models import load_vae
    from lenstronomy_vae.rendering import convolve_bands
    from lenstronomy_vae.report import image_metrics, summarise
    from lenstronomy_vae.scene import survey_kernels
    from lenstronomy_vae.training import run_summary, ship, split_three, training_data_entry

    blends = BlendSet.load_hdf5(data)
    held_out_set, validation_set, train_set = split_three(blends, held_out, validation)
    deblender, state = train_deblender(load_vae(vae), train_set, validation_set, epochs, checkpoint_dir,
                                       latent_weight=latent_weight, batch_size=batch_size,
                                       learning_rate=learning_rate, seed=seed)
    images = convolve_bands(deblender.deblend(held_out_set.blend), survey_kernels(blends.survey, blends.bands))
    metrics = image_metrics({"deblender": images}, held_out_set)["deblender"]
    band = blends.survey.band_index(blends.config.measure_band)
    summary = {"held_out_scenes": len(held_out_set),
               **summarise(metrics["de"], metrics["flux_error"], metrics["ssim"], metrics["cosine"], band),
               **run_summary(state)}
    training_data = training_data_entry(data, blends, train_set, validation_set, held_out_set)
    return ship(deblender, name, weights_dir, training_data, summary, kind="deblender", parent=str(vae))
