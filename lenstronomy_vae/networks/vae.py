"""The β-VAE galaxy model: convolutional encoder, sampling layer, convolutional decoder.

The encoder maps an observed stamp (normalised, (H, W, C)) to the mean and log-variance of a
diagonal Gaussian in a ``latent_dim``-dimensional space; the decoder maps a latent vector to the
normalised *intrinsic* galaxy (no PSF: lenstronomy convolves with the PSF itself). Training
minimises ``χ²/2 + kl_weight · KL`` per galaxy, the χ² taken in normalised pixel units.
"""

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from lenstronomy_vae.networks.normalization import ArcsinhTanhNormalization  # noqa: F401  (registers it for loading)
from lenstronomy_vae.networks.orientation import oriented, random_orientations


@dataclasses.dataclass(frozen=True)
class VAEConfig:
    """Architecture of a galaxy VAE.

    Attributes:
        image_size: stamp side in pixels. The networks work on ``padded_size``, the next
            multiple of 2**len(decoder_filters): the encoder zero-pads its input to it and the
            decoder crops its output back (e.g. 45 → 48 → 45 with three decoder layers).
        bands: band names, one per image channel.
        latent_dim: dimension of the latent space.
        encoder_filters: filters of the stride-2 convolutions of the encoder.
        decoder_filters: filters of the stride-2 transposed convolutions of the decoder.
        dense_units: width of the dense layer after the encoder's convolutions.
        pixel_scale: arcsec per pixel of the training images.
    """

    image_size: int = 64
    bands: tuple = ("F814W",)
    latent_dim: int = 32
    encoder_filters: tuple = (16, 32, 64, 128)
    decoder_filters: tuple = (64, 32, 16, 8)
    dense_units: int = 256
    pixel_scale: float = 0.03

    def __post_init__(self):
        object.__setattr__(self, "bands", tuple(self.bands))
        object.__setattr__(self, "encoder_filters", tuple(self.encoder_filters))
        object.__setattr__(self, "decoder_filters", tuple(self.decoder_filters))
        if self.image_size < 2 ** len(self.decoder_filters):
            raise ValueError(f"image_size {self.image_size} is smaller than 2**len(decoder_filters) = "
                             f"{2 ** len(self.decoder_filters)}")
        if self.latent_dim < 1 or not self.bands:
            raise ValueError(f"need latent_dim >= 1 and at least one band; got {self}")

    @property
    def num_bands(self):
        return len(self.bands)

    @property
    def padded_size(self):
        """Side of the networks' internal grid: ``image_size`` up to a multiple of 2**len(decoder_filters)."""
        factor = 2 ** len(self.decoder_filters)
        return -(-self.image_size // factor) * factor

    @property
    def padding(self):
        """((top, bottom), (left, right)) pixels between ``image_size`` and ``padded_size``."""
        extra = self.padded_size - self.image_size
        return ((extra // 2, extra - extra // 2),) * 2

    def to_dict(self):
        return dataclasses.asdict(self)


def build_encoder(config):
    """Functional encoder: normalised stamp (H, W, C) → (z_mean, z_log_var)."""
    images = keras.Input((config.image_size, config.image_size, config.num_bands), name="images")
    x = images
    if config.padded_size != config.image_size:
        x = keras.layers.ZeroPadding2D(config.padding)(x)
    for filters in config.encoder_filters:
        x = keras.layers.Conv2D(filters, 3, strides=2, padding="same", activation="leaky_relu")(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(config.dense_units, activation="leaky_relu")(x)
    z_mean = keras.layers.Dense(config.latent_dim, name="z_mean")(x)
    z_log_var = keras.layers.Dense(config.latent_dim, name="z_log_var")(x)
    return keras.Model(images, [z_mean, z_log_var], name="encoder")


def build_decoder(config):
    """Functional decoder: latent vector (d,) → normalised intrinsic stamp (H, W, C)."""
    start = config.padded_size // 2 ** len(config.decoder_filters)
    latent = keras.Input((config.latent_dim,), name="latent")
    x = keras.layers.Dense(start * start * config.decoder_filters[0], activation="leaky_relu")(latent)
    x = keras.layers.Reshape((start, start, config.decoder_filters[0]))(x)
    for filters in config.decoder_filters:
        x = keras.layers.Conv2DTranspose(
            filters, 3, strides=2, padding="same", activation="leaky_relu"
        )(x)
    if config.padded_size == config.image_size:
        images = keras.layers.Conv2D(config.num_bands, 3, padding="same", name="images")(x)
    else:
        x = keras.layers.Conv2D(config.num_bands, 3, padding="same")(x)
        images = keras.layers.Cropping2D(config.padding, name="images")(x)
    return keras.Model(latent, images, name="decoder")


@keras.saving.register_keras_serializable(package="lenstronomy_vae")
class Sampling(keras.layers.Layer):
    """Reparameterised draw z = μ + σ ε, ε ~ N(0, 1), with a seeded generator."""

    def __init__(self, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs):
        z_mean, z_log_var = inputs
        epsilon = keras.random.normal(keras.ops.shape(z_mean), seed=self.seed_generator)
        return z_mean + keras.ops.exp(0.5 * z_log_var) * epsilon

    def get_config(self):
        return {**super().get_config(), "seed": self.seed}


@keras.saving.register_keras_serializable(package="lenstronomy_vae")
class GalaxyVAE(keras.Model):
    """β-VAE for galaxy stamps, with the normalisation that defines its pixel units.

    Training data are tuples ``(observed, target, weight)`` of *normalised* arrays
    (n, H, W, C): the encoder sees ``observed``, the decoder is scored against ``target`` with
    per-pixel χ² weights ``weight`` (inverse variances; ones for an unweighted loss).

    Args:
        config: a :class:`VAEConfig` or its dict.
        normalization: the :class:`ArcsinhTanhNormalization` (or its config dict) of the data.
        kl_weight: initial weight of the KL term (β of the β-VAE); a callback can change it.
        seed: seed of the sampling layer and of the orientations.
        augment: train each stamp in one of its eight orientations, drawn anew every time
            (:mod:`lenstronomy_vae.networks.orientation`: quarter turns and a mirror, the observed
            stamp, target and weights turned together). On ``data/hst64.h5`` (28,000 training
            stamps) a decoder of 128-64-32-16 filters learned its training galaxies by heart without
            it (120 epochs: training loss 173, validation 296) and not with it (257 and 246).
    """

    def __init__(self, config, normalization, kl_weight=1.0, seed=None, augment=False, **kwargs):
        super().__init__(**kwargs)
        self.config = config if isinstance(config, VAEConfig) else VAEConfig(**config)
        if isinstance(normalization, dict):
            normalization = keras.saving.deserialize_keras_object(normalization)
        if normalization.num_bands != self.config.num_bands:
            raise ValueError(
                f"normalisation has {normalization.num_bands} band constants but the model has "
                f"{self.config.num_bands} bands {self.config.bands}"
            )
        self.normalization = normalization
        self.seed = seed
        self.augment = bool(augment)
        self.orientation_seeds = keras.random.SeedGenerator(seed)
        self.encoder = build_encoder(self.config)
        self.decoder = build_decoder(self.config)
        self.sampling = Sampling(seed=seed)
        self.kl_weight = keras.Variable(float(kl_weight), trainable=False, name="kl_weight")
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.chi2_tracker = keras.metrics.Mean(name="chi2")
        self.kl_tracker = keras.metrics.Mean(name="kl")
        self.built = True  # the functional encoder and decoder own every weight already

    @property
    def metrics(self):
        return [self.loss_tracker, self.chi2_tracker, self.kl_tracker]

    def call(self, observed, training=False):
        """Mean reconstruction (normalised units) of normalised observed stamps."""
        z_mean, _ = self.encoder(observed, training=training)
        return self.decoder(z_mean, training=training)

    def _loss_terms(self, data, training):
        loss, chi2, kl, _ = self._vae_terms(*data, training=training)
        return loss, chi2, kl

    def _vae_terms(self, observed, target, weight, training):
        """(χ²/2 + kl_weight · KL, χ², KL, z_mean), batch means of the per-galaxy χ² and KL."""
        z_mean, z_log_var = self.encoder(observed, training=training)
        z = self.sampling([z_mean, z_log_var]) if training else z_mean
        reconstruction = self.decoder(z, training=training)
        chi2 = tf.reduce_mean(tf.reduce_sum(weight * tf.square(reconstruction - target), axis=(1, 2, 3)))
        kl = tf.reduce_mean(
            -0.5 * tf.reduce_sum(1.0 + z_log_var - tf.square(z_mean) - tf.exp(z_log_var), axis=1)
        )
        return 0.5 * chi2 + self.kl_weight * kl, chi2, kl, z_mean

    def _update_metrics(self, loss, chi2, kl):
        self.loss_tracker.update_state(loss)
        self.chi2_tracker.update_state(chi2)
        self.kl_tracker.update_state(kl)
        return {m.name: m.result() for m in self.metrics}

    def _oriented(self, observed, target, weight):
        """The three stamp batches turned and mirrored alike, each stamp in a random orientation."""
        channels = observed.shape[-1]
        turns, mirror = random_orientations(tf.shape(observed)[0], self.orientation_seeds)
        stacked = oriented(tf.concat([observed, target, weight], axis=-1), turns, mirror)
        return stacked[..., :channels], stacked[..., channels:2 * channels], stacked[..., 2 * channels:]

    def train_step(self, data):
        if self.augment:
            data = self._oriented(*data)
        with tf.GradientTape() as tape:
            loss, chi2, kl = self._loss_terms(data, training=True)
            # Under tf.distribute each replica's gradient is summed: scale to the global mean.
            scaled = loss / tf.distribute.get_strategy().num_replicas_in_sync
        gradients = tape.gradient(scaled, self.trainable_weights)
        self.optimizer.apply(gradients, self.trainable_weights)
        return self._update_metrics(loss, chi2, kl)

    def test_step(self, data):
        return self._update_metrics(*self._loss_terms(data, training=False))

    def get_config(self):
        return {
            "config": self.config.to_dict(),
            "normalization": keras.saving.serialize_keras_object(self.normalization),
            "kl_weight": float(np.asarray(self.kl_weight)),
            "seed": self.seed,
            "augment": self.augment,
            "name": self.name,
        }


class KLWarmup(keras.callbacks.Callback):
    """Raise the KL weight linearly from ``start`` to ``end`` over the first ``epochs`` epochs."""

    def __init__(self, start=0.0, end=1.0, epochs=5):
        super().__init__()
        self.start, self.end, self.epochs = float(start), float(end), max(int(epochs), 1)

    def on_epoch_begin(self, epoch, logs=None):
        fraction = min(epoch / self.epochs, 1.0)
        self.model.kl_weight.assign(self.start + fraction * (self.end - self.start))
