"""Shipped and user network files: lookup by name, integrity checks, safe loading.

A network is named either by a shipped name (``weights/manifest.json``) or by a path to a
``.keras`` file. Loading checks the SHA-256 recorded in the manifest and refuses anything that
would run code (Keras ``safe_mode``).
"""

import hashlib
import importlib.resources
import json
import os
import pathlib
import zipfile

import keras

from lenstronomy_vae.networks.deblender import Deblender
from lenstronomy_vae.networks.regressor import LatentRegressor
from lenstronomy_vae.networks.vae import GalaxyVAE

MANIFEST_NAME = "manifest.json"


class ModelFileError(ValueError):
    """A model name or file that cannot be used: unknown, missing, corrupt or unsafe."""


# What to pass instead when a file holds the wrong kind of network.
_KIND_HINTS = {
    Deblender: ": pass a deblender (e.g. 'lsst45_deblender'; `lenstronomy-vae models` lists them)",
    LatentRegressor: ": pass a regressor (e.g. 'lsst45_regressor'; `lenstronomy-vae models` lists them)",
}


def weights_dir():
    """Directory of the shipped weights (package data when installed, ``weights/`` in a checkout)."""
    try:
        return pathlib.Path(importlib.resources.files("lenstronomy_vae.weights"))
    except ModuleNotFoundError:
        return pathlib.Path(__file__).resolve().parents[2] / "weights"


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
        kind: the class the file must hold (default :class:`GalaxyVAE`, which a :class:`Deblender`
            also is; :class:`LatentRegressor` for a regressor).

    Raises:
        ModelFileError: unknown name, missing file, hash mismatch, a file that is not a Keras
            archive, one that would need code execution (e.g. a Lambda layer), or one holding
            another kind of network.
    """
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
        raise ModelFileError(f"{str(path)!r} holds a {type(network).__name__}, not a lenstronomy_vae {kind.__name__}"
                             f"{_KIND_HINTS.get(kind, '')}")
    return network


def load_vae(model=None):
    """Load a :class:`GalaxyVAE` safely (see :func:`load_network`).

    Args:
        model: shipped model name or path to a ``.keras`` file; None for the default model.
    """
    return load_network(model, GalaxyVAE)
