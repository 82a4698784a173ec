"""Weak-lensing regressor: from a frozen encoder's latent space to the target's shape and redshift.

A small dense network reads the latent mean that a (frozen) deblender encoder gives a blended
stamp and predicts the central galaxy's intrinsic ellipticity (g1, g2) as a reduced shear,
g = (1 − q)/(1 + q), (g1, g2) = g (cos 2φ, sin 2φ) with φ counter-clockwise from the +x
(column) axis, the applied shear included, and, when the data has it, its redshift.

Training augments each stamp with a random quarter turn and a random mirror and transforms the
labels to match: a 90° turn maps φ to φ + π/2, negating g1 and g2; a mirror of the columns
(x → −x) maps φ to π − φ, negating g2. Redshift is unchanged.
"""

import keras
import numpy as np
import tensorflow as tf

from lenstronomy_vae.networks.decoding import checked_stamps
from lenstronomy_vae.networks.orientation import oriented, random_orientations
from lenstronomy_vae.networks.vae import VAEConfig, build_encoder

SHAPE_OUTPUTS = ("g1", "g2")
ALL_OUTPUTS = ("g1", "g2", "redshift")


def augment(images, labels, quarter_turns, mirror, outputs=ALL_OUTPUTS):
    """Turn and mirror stamps and transform their labels to match.

    Args:
        images: tensor (n, H, W, C), rows y and columns x.
        labels: tensor (n, len(outputs)) in the order of ``outputs``.
        quarter_turns: int tensor (n,): counter-clockwise quarter turns (``tf.image.rot90``).
        mirror: bool tensor (n,): after turning, mirror the columns (x → −x).
        outputs: label names; ``g1`` and ``g2`` are transformed, others pass unchanged.

    Returns:
        (images, labels) transformed.
    """
    turn_sign = 1.0 - 2.0 * tf.cast(quarter_turns % 2, labels.dtype)
    mirror_sign = 1.0 - 2.0 * tf.cast(mirror, labels.dtype)
    signs = [turn_sign if name == "g1" else turn_sign * mirror_sign if name == "g2" else tf.ones_like(turn_sign)
             for name in outputs]
    return oriented(images, quarter_turns, mirror), labels * tf.stack(signs, axis=1)


@keras.saving.register_keras_serializable(package="lenstronomy_vae")
class LatentRegressor(keras.Model):
    """Frozen encoder → latent mean → dense layers → (g1, g2[, redshift]).

    Args:
        config: the encoder's :class:`VAEConfig` (or its dict).
        normalization: the encoder's :class:`ArcsinhTanhNormalization` (or its config dict).
        outputs: names of the predicted quantities, a subset of ``("g1", "g2", "redshift")``
            that contains g1 and g2.
        hidden_units: widths of the hidden dense layers.
        seed: seed of the augmentation.
        shear_response: (R1, R2), the network's response d⟨ĝ_i⟩/dg_i to an applied shear,
            measured on sheared simulations (:func:`calibrate_shear_response`);
            :meth:`predict_quantities` divides g1 and g2 by it. (1, 1): uncalibrated.
    """

    def __init__(self, config, normalization, outputs=ALL_OUTPUTS, hidden_units=(128, 128), seed=None,
                 shear_response=(1.0, 1.0), **kwargs):
        super().__init__(**kwargs)
        self.config = config if isinstance(config, VAEConfig) else VAEConfig(**config)
        if isinstance(normalization, dict):
            normalization = keras.saving.deserialize_keras_object(normalization)
        self.normalization = normalization
        self.outputs_names = tuple(outputs)
        if not set(SHAPE_OUTPUTS) <= set(self.outputs_names) or not set(self.outputs_names) <= set(ALL_OUTPUTS):
            raise ValueError(f"outputs must contain g1 and g2 and be among {ALL_OUTPUTS}; got {outputs}")
        self.hidden_units = tuple(int(u) for u in hidden_units)
        self.seed = seed
        self.shear_response = tuple(float(r) for r in shear_response)
        if len(self.shear_response) != 2 or not all(np.isfinite(r) and r > 0 for r in self.shear_response):
            raise ValueError(f"shear_response must be two positive numbers (R1, R2); got {shear_response}")
        self.encoder = build_encoder(self.config)
        self.encoder.trainable = False
        latent = keras.Input((self.config.latent_dim,))
        x = latent
        for units in self.hidden_units:
            x = keras.layers.Dense(units, activation="leaky_relu")(x)
        self.head = keras.Model(latent, keras.layers.Dense(len(self.outputs_names))(x), name="head")
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.built = True

    @classmethod
    def from_encoder_model(cls, model, outputs=ALL_OUTPUTS, hidden_units=(128, 128), seed=None):
        """A regressor reading the latent space of a trained VAE or deblender (its encoder, frozen)."""
        regressor = cls(model.config, model.normalization, outputs=outputs, hidden_units=hidden_units, seed=seed,
                        name="regressor")
        regressor.encoder.set_weights(model.encoder.get_weights())
        return regressor

    @property
    def metrics(self):
        return [self.loss_tracker]

    def call(self, normalized, training=False):
        z_mean, _ = self.encoder(normalized, training=False)
        return self.head(z_mean, training=training)

    def _loss(self, images, labels, training):
        return tf.reduce_mean(tf.reduce_sum(tf.square(self(images, training=training) - labels), axis=1))

    def train_step(self, data):
        images, labels = data
        turns, mirror = random_orientations(tf.shape(images)[0], self.seed_generator)
        images, labels = augment(images, labels, turns, mirror, self.outputs_names)
        with tf.GradientTape() as tape:
            loss = self._loss(images, labels, training=True)
            scaled = loss / tf.distribute.get_strategy().num_replicas_in_sync
        gradients = tape.gradient(scaled, self.head.trainable_weights)
        self.optimizer.apply(gradients, self.head.trainable_weights)
        self.loss_tracker.update_state(loss)
        return {"loss": self.loss_tracker.result()}

    def test_step(self, data):
        self.loss_tracker.update_state(self._loss(*data, training=False))
        return {"loss": self.loss_tracker.result()}

    def predict_quantities(self, stamps, batch_size=256):
        """Predicted quantities of the central galaxy of each stamp.

        Args:
            stamps: (n, H, W, bands) in image units, bands last, the galaxy of interest at the centre
                (one (H, W, bands) stamp gives arrays of one value).

        Returns:
            dict name → (n,) array: ``g1``, ``g2`` (reduced shear, see the module docstring),
            divided by ``shear_response``, and ``redshift`` when predicted.
        """
        stamps, _ = checked_stamps(self, stamps)
        predictions = np.concatenate([
            np.asarray(self(self.normalization.normalize(stamps[i:i + batch_size]).astype(np.float32)))
            for i in range(0, len(stamps), batch_size)])
        response = {"g1": self.shear_response[0], "g2": self.shear_response[1]}
        return {name: predictions[:, k] / response.get(name, 1.0) for k, name in enumerate(self.outputs_names)}

    def with_shear_response(self, shear_response):
        """A copy of this regressor (same weights) with another ``shear_response``."""
        copy = type(self).from_config({**self.get_config(), "shear_response": list(shear_response)})
        copy.set_weights(self.get_weights())
        return copy

    def get_config(self):
        return {
            "config": self.config.to_dict(),
            "normalization": keras.saving.serialize_keras_object(self.normalization),
            "outputs": list(self.outputs_names),
            "hidden_units": list(self.hidden_units),
            "seed": self.seed,
            "shear_response": list(self.shear_response),
            "name": self.name,
        }
