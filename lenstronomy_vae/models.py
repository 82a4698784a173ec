"""Shipped and user VAE galaxy models: lookup, integrity checks, safe loading, decoding.

A model is named either by a shipped name (``weights/manifest.json``) or by a path to a
``.keras`` file. Loading checks the SHA-256 recorded in the manifest, refuses anything that
would run code (Keras ``safe_mode``), and caches one :class:`GalaxyModel` per file and process:
lenstronomy re-creates profile objects many times during a fit.
"""

import functools
import hashlib
import importlib.resources
import json
import os
import pathlib
import warnings
import zipfile

import keras
import numpy as np
import tensorflow as tf

from lenstronomy_vae.fast_decoder import NumpyDecoder
from lenstronomy_vae.vae import GalaxyVAE

MANIFEST_NAME = "manifest.json"

# Batches of at least this many latent vectors go to TensorFlow, smaller ones to the
# single-threaded NumpyDecoder. Never, by default: with benchmarks/decoder_throughput.py
# (default decoder, 2 busy cores) numpy was faster at every batch size from 1 to 1024, with
# TensorFlow on one thread or two: 0.22–0.29 ms against 0.75–1.9 ms per call at batch 1 and
# 1.3–1.4× the samples/s at batch 256 and 1024. On a machine with many idle cores, one
# TensorFlow call can spread over all of them, which the numpy path never does: lower this
# there if decoder_throughput.py shows tf.function ahead at large batches.
GRAPH_MIN_BATCH = float("inf")


class ModelFileError(ValueError):
    """A model name or file that cannot be used: unknown, missing, corrupt or unsafe."""


def weights_dir():
    """Directory of the shipped weights (package data when installed, ``weights/`` in a checkout)."""
    try:
        return pathlib.Path(importlib.resources.files("lenstronomy_vae.weights"))
    except ModuleNotFoundError:
        return pathlib.Path(__file__).resolve().parents[1] / "weights"


def read_manifest(directory=None):
    """The manifest of shipped models: ``{"default": name, "models": {name: entry}}``."""
    path = pathlib.Path(directory or weights_dir()) / MANIFEST_NAME
    if not path.is_file():
        return {"default": None, "models": {}}
    with open(path) as f:
        return json.load(f)


def shipped_models():
    """Names of the shipped models, default first."""
    manifest = read_manifest()
    names = sorted(manifest["models"])
    default = manifest.get("default")
    return sorted(names, key=lambda name: name != default)


def default_model_name():
    manifest = read_manifest()
    if not manifest.get("default"):
        raise ModelFileError(f"no shipped default model: {weights_dir() / MANIFEST_NAME} is missing")
    return manifest["default"]


def sha256_of(path):
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def resolve(model=None):
    """Path and manifest entry (or None for a user file) of a model name or ``.keras`` path."""
    if model is None:
        model = default_model_name()
    manifest = read_manifest()
    if model in manifest["models"]:
        entry = manifest["models"][model]
        return weights_dir() / entry["file"], entry
    if str(model).endswith(".keras") or os.sep in str(model):
        return pathlib.Path(model).expanduser().resolve(), None
    raise ModelFileError(
        f"unknown model {model!r}: shipped models are {shipped_models()}; "
        "or pass the path of a .keras file"
    )


def load_network(model, kind=None):
    """Load a shipped or user Keras network safely: file checks, SHA-256 against the manifest, safe_mode.

    Args:
        model: shipped model name or path to a ``.keras`` file; None for the default VAE.
        kind: the class the file must hold (default :class:`GalaxyVAE`, which a
            :class:`~lenstronomy_vae.deblender.Deblender` also is).

    Raises:
        ModelFileError: unknown name, missing file, hash mismatch, a file that is not a Keras
            archive, one that would need code execution (e.g. a Lambda layer), or one holding
            another kind of network.
    """
    # Registers the Deblender and LatentRegressor classes that a file may name (Keras looks them up by name).
    from lenstronomy_vae import deblender, regressor  # noqa: F401

    kind = kind or GalaxyVAE
    path, entry = resolve(model)
    if not path.is_file():
        raise ModelFileError(f"model file {str(path)!r} does not exist")
    if entry is not None and sha256_of(path) != entry["sha256"]:
        raise ModelFileError(
            f"model file {str(path)!r} does not match its manifest: SHA-256 {sha256_of(path)} "
            f"!= {entry['sha256']}; the file is corrupt or was replaced. Reinstall the package."
        )
    if not zipfile.is_zipfile(path):
        raise ModelFileError(f"model file {str(path)!r} is not a Keras .keras archive (truncated or corrupt)")
    try:
        network = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as error:  # Keras raises many types for a bad archive; name the file instead.
        raise ModelFileError(f"could not load model file {str(path)!r} safely: {error}") from error
    if not isinstance(network, kind):
        raise ModelFileError(f"{str(path)!r} holds a {type(network).__name__}, not a lenstronomy_vae {kind.__name__}")
    return network


def load_vae(model=None):
    """Load a :class:`GalaxyVAE` safely (see :func:`load_network`).

    Args:
        model: shipped model name or path to a ``.keras`` file; None for the default model.
    """
    return load_network(model, GalaxyVAE)


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
        return np.maximum(self.vae.normalization.inverse(normalized.astype(np.float64)), 0.0)


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
