"""A loaded VAE decoder ready for likelihood loops: numpy forward pass, image units, one cache per process.

lenstronomy re-creates profile objects many times during a fit, so :func:`load_galaxy_model`
caches one :class:`GalaxyModel` per file (and modification time) and process.
"""

import functools
import warnings

import numpy as np
import tensorflow as tf

from lenstronomy_vae.networks.decoding import to_image_units
from lenstronomy_vae.networks.model_files import default_model_name, load_vae, resolve
from lenstronomy_vae.networks.numpy_decoder import NumpyDecoder

# Batches of at least this many latent vectors go to TensorFlow, smaller ones to the
# single-threaded NumpyDecoder. Never, by default: with benchmarks/decoder_throughput.py
# (default decoder, 2 busy cores) numpy was faster at every batch size from 1 to 1024, with
# TensorFlow on one thread or two: 0.22–0.29 ms against 0.75–1.9 ms per call at batch 1 and
# 1.3–1.4× the samples/s at batch 256 and 1024. On a machine with many idle cores, one
# TensorFlow call can spread over all of them, which the numpy path never does: lower this
# there if decoder_throughput.py shows tf.function ahead at large batches.
GRAPH_MIN_BATCH = float("inf")


class GalaxyModel:
    """A loaded VAE decoder with its normalisation, ready for likelihood loops.

    Decoding runs a float32 numpy copy of the decoder (:class:`NumpyDecoder`, weights read
    once here) for batches below ``GRAPH_MIN_BATCH`` (all, by default) and a ``tf.function``
    of the Keras decoder for larger ones, or for a decoder NumpyDecoder cannot run; both
    give the same stamps to float32 rounding.

    Attributes:
        name: the model name or path it was loaded from.
        latent_dim: dimension of the latent space.
        image_size: decoded stamp side, pixels.
        bands: band names (the last axis of decoded stamps).
        pixel_scale: arcsec per pixel of the training images.
    """

    def __init__(self, vae, name):
        self.vae = vae
        self.name = name
        self.latent_dim = vae.config.latent_dim
        self.image_size = vae.config.image_size
        self.bands = vae.config.bands
        self.pixel_scale = vae.config.pixel_scale
        decoder = vae.decoder
        self._decode_graph = tf.function(
            lambda z: decoder(z, training=False),
            input_signature=[tf.TensorSpec((None, self.latent_dim), tf.float32)],
            reduce_retracing=True,
        )
        try:
            self._decode_numpy = NumpyDecoder.from_keras(decoder)
        except NotImplementedError as error:
            warnings.warn(
                f"model {name!r}: {error}; decoding with TensorFlow only, several times slower "
                "per latent vector in likelihood loops",
                stacklevel=2,
            )
            self._decode_numpy = None

    def check_latents(self, z):
        """Latent array as float32 (n, d); raises a clear error for a wrong size or NaN."""
        z = np.asarray(z, dtype=np.float32)
        if z.ndim == 1:
            z = z[None]
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(
                f"model {self.name!r} has a {self.latent_dim}-dimensional latent space; "
                f"got latent array of shape {z.shape}"
            )
        if not np.all(np.isfinite(z)):
            bad = np.argwhere(~np.isfinite(z))
            raise ValueError(f"latent values must be finite; {len(bad)} are NaN or infinite, first at "
                             f"(sample, latent) {tuple(int(i) for i in bad[0])}")
        return z

    def decode(self, z):
        """Intrinsic (PSF-free) galaxy stamps in image units from latent vectors.

        Args:
            z: latents, shape (d,) or (n, d).

        Returns:
            float64 array (n, H, W, C), non-negative, in the units of the training images.
        """
        z = self.check_latents(z)
        if self._decode_numpy is not None and len(z) < GRAPH_MIN_BATCH:
            normalized = self._decode_numpy(z)
        else:
            normalized = self._decode_graph(z).numpy()
        return np.maximum(to_image_units(self.vae.normalization, normalized.astype(np.float64)), 0.0)


@functools.lru_cache(maxsize=8)
def _load_cached(model, path, mtime_ns):
    """One GalaxyModel per (file, modification time) and process."""
    del path, mtime_ns  # part of the cache key only
    return GalaxyModel(load_vae(model), name=str(model))


def load_galaxy_model(model=None):
    """The :class:`GalaxyModel` of a shipped name or ``.keras`` path, cached per process."""
    model = default_model_name() if model is None else str(model)
    path, _ = resolve(model)
    mtime = path.stat().st_mtime_ns if path.is_file() else None
    return _load_cached(model, str(path), mtime)
