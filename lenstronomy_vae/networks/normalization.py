"""The arcsinh–tanh pixel normalisation of Arcelin et al. (2021), with its exact inverse.

Each band b is mapped as ``y_b = tanh(arcsinh(beta * x_b / m_b))`` where ``m_b`` is the mean over
the training set of the per-image maximum of band b. Faint pixels stay linear, bright cores are
compressed into (-1, 1), so one network sees faint discs and bright bulges on the same scale.
"""

import keras
import numpy as np

DEFAULT_BETA = 2.5

# arctanh diverges at ±1; float32 resolves 1 - 1e-6, which maps back to about 7.25 m_b / beta.
CLIP = 1.0 - 1e-6


def _backend(array):
    """numpy for numpy input (no graph overhead in likelihood loops), keras.ops otherwise."""
    return np if isinstance(array, (np.ndarray, float, int)) else keras.ops


@keras.saving.register_keras_serializable(package="lenstronomy_vae")
class ArcsinhTanhNormalization(keras.layers.Layer):
    """Per-band normalisation ``y = tanh(arcsinh(beta * x / band_max))`` and its inverse.

    The layer is part of the saved VAE, so its constants travel with the weights.
    :meth:`normalize` and :meth:`inverse` take numpy arrays (and return numpy, without graph
    overhead) or tensors; calling the layer, as Keras does, normalises tensors.

    Args:
        band_max: mean per-image maximum of each band in the training set, image units; one value
            per band (the last axis of the images).
        beta: stretch parameter (dimensionless); 2.5 as in Arcelin et al. (2021).
    """

    def __init__(self, band_max, beta=DEFAULT_BETA, **kwargs):
        super().__init__(**kwargs)
        band_max = np.atleast_1d(np.asarray(band_max, dtype=np.float64))
        if band_max.ndim != 1 or not np.all(np.isfinite(band_max)) or np.any(band_max <= 0):
            raise ValueError(
                f"band_max must be positive finite numbers, one per band; got {band_max.tolist()}"
            )
        if not beta > 0:
            raise ValueError(f"beta must be positive; got {beta}")
        self.band_max = band_max
        self.beta = float(beta)

    @classmethod
    def fit(cls, images, beta=DEFAULT_BETA):
        """Normalisation whose constants are the mean per-image, per-band maxima of ``images``.

        Args:
            images: array (n, height, width, bands) in image units.
            beta: stretch parameter.
        """
        images = np.asarray(images)
        if images.ndim != 4:
            raise ValueError(f"images must have shape (n, height, width, bands); got {images.shape}")
        return cls(band_max=images.max(axis=(1, 2)).mean(axis=0), beta=beta)

    @property
    def num_bands(self):
        return len(self.band_max)

    def _scale(self, xp):
        return self.beta / self.band_max if xp is np else keras.ops.convert_to_tensor(
            self.beta / self.band_max, dtype=self.compute_dtype
        )

    def normalize(self, images):
        """Normalise images (..., bands) in image units to (-1, 1)."""
        xp = _backend(images)
        return xp.tanh(xp.arcsinh(images * self._scale(xp)))

    def call(self, images):
        return self.normalize(images)

    def inverse(self, normalized, peak_limit=None):
        """Image units from normalised values (..., bands).

        Args:
            normalized: values (..., bands); clipped inside (-1, 1).
            peak_limit: optional cap on the result, in units of each band's ``band_max``. Near 1
                the inverse is steep (a decoded 1 − 10⁻⁶ is 282 band_max): a decoder output just
                beyond the training range would otherwise give fluxes hundreds of times too large.
        """
        xp = _backend(normalized)
        clipped = xp.clip(normalized, -CLIP, self.saturation(peak_limit))
        return xp.sinh(xp.arctanh(clipped)) / self._scale(xp)

    def saturation(self, peak_limit=None):
        """The largest normalised value :meth:`inverse` distinguishes: beyond it the result is constant.

        Args:
            peak_limit: the cap of :meth:`inverse`, in units of band_max; None for none (then
                :data:`CLIP`, where float32 stops resolving the inverse).
        """
        return CLIP if peak_limit is None else min(CLIP, float(np.tanh(np.arcsinh(self.beta * peak_limit))))

    def inverse_variance(self, images, noise_sigma):
        """Inverse variance of normalised pixels for Gaussian pixel noise, propagated linearly.

        Used as the χ² weight of the reconstruction loss.

        Args:
            images: array (..., bands) in image units, at which the derivative is taken.
            noise_sigma: noise standard deviation in image units, broadcastable to ``images``.

        Returns:
            numpy array like ``images``: 1 / σ_y², with σ_y = |dy/dx| σ_x.
        """
        u = np.asarray(images) * self._scale(np)
        slope = self._scale(np) * (1.0 - np.tanh(np.arcsinh(u)) ** 2) / np.sqrt(1.0 + u**2)
        return 1.0 / (slope * np.asarray(noise_sigma)) ** 2

    def get_config(self):
        config = super().get_config()
        config.update({"band_max": self.band_max.tolist(), "beta": self.beta})
        return config
