"""Shipped and user network files: lookup by name, integrity checks, safe loading.

A network is named by a model name or by a path to a ``.keras`` file. Names are looked up in
two manifests (``manifest.json``): the shipped models' (the package's ``weights/``, never
written by training) and the user's own (:func:`user_models_dir`, where training writes by
default). Loading checks the SHA-256 recorded in the manifest and refuses anything that would
run code (Keras ``safe_mode``).
"""

import hashlib
import importlib.resources
import json
import os
import pathlib
import warnings
import zipfile

import keras

from lenstronomy_vae.networks.deblender import Deblender
from lenstronomy_vae.networks.latent_prior import LatentPrior
from lenstronomy_vae.networks.regressor import LatentRegressor
from lenstronomy_vae.networks.training_range import TrainingRange
from lenstronomy_vae.networks.vae import GalaxyVAE

MANIFEST_NAME = "manifest.json"
HOME_VARIABLE = "LENSTRONOMY_VAE_HOME"
DEFAULT_HOME = "~/.lenstronomy_vae"


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


def user_models_dir():
    """Directory of the user's own models: ``$LENSTRONOMY_VAE_HOME/models``, by default ``~/.lenstronomy_vae/models``.

    Training writes its models and their ``manifest.json`` here unless told otherwise; names
    listed there load like shipped ones. Looking it up creates nothing.
    """
    return pathlib.Path(os.environ.get(HOME_VARIABLE) or DEFAULT_HOME).expanduser() / "models"


def read_manifest(directory=None):
    """The manifest of the models in ``directory`` (default: the shipped ones): ``{"default": name, "models": {}}``.

    A directory without a manifest has no models.

    Raises:
        ModelFileError: the manifest is not valid JSON or has no ``models`` mapping.
    """
    path = pathlib.Path(directory or weights_dir()) / MANIFEST_NAME
    if not path.is_file():
        return {"default": None, "models": {}}
    try:
        with open(path) as f:
            manifest = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelFileError(f"model manifest {str(path)!r} is not valid JSON ({error}); repair or remove it") \
            from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("models"), dict):
        raise ModelFileError(f"model manifest {str(path)!r} has no 'models' mapping; repair or remove it")
    return manifest


def shipped_models():
    """Names of the shipped models, default first."""
    manifest = read_manifest()
    names = sorted(manifest["models"])
    default = manifest.get("default")
    return sorted(names, key=lambda name: name != default)


def user_models():
    """Names of the user's models (:func:`user_models_dir`), sorted."""
    return sorted(read_manifest(user_models_dir())["models"])


def default_model_name():
    """The model used when none is named: the user's default (set by ``train --default``), else the shipped one."""
    user_default = read_manifest(user_models_dir()).get("default")
    if user_default:
        return user_default
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


def is_model_path(model):
    """Whether ``model`` names a file (ends in ``.keras`` or holds a path separator) rather than a model name."""
    return str(model).endswith(".keras") or os.sep in str(model)


def resolve(model=None):
    """Path and manifest entry (None for a file given by path) of a model name or ``.keras`` path.

    A name is looked up among the shipped models, then the user's. A user model can carry a
    shipped name only when it was written with ``overwrite``; it then replaces the shipped one,
    and every lookup says so in a warning.

    Raises:
        ModelFileError: an unknown name, or an unreadable manifest.
    """
    if model is None:
        model = default_model_name()
    shipped = read_manifest()["models"]
    user_directory = user_models_dir()
    user = read_manifest(user_directory)["models"]
    if model in user:
        if model in shipped:
            warnings.warn(f"model {model!r} is your model in {user_directory}, which replaces the shipped "
                          f"{model!r} (it was written with --overwrite)", stacklevel=2)
        return user_directory / user[model]["file"], user[model]
    if model in shipped:
        return weights_dir() / shipped[model]["file"], shipped[model]
    if is_model_path(model):
        return pathlib.Path(model).expanduser().resolve(), None
    raise ModelFileError(
        f"unknown model {model!r}: shipped models are {shipped_models()}, yours (in {user_directory}) "
        f"{sorted(user)}; or pass the path of a .keras file"
    )


def load_network(model, kind=None):
    """Load a shipped or user Keras network safely: file checks, SHA-256 against the manifest, safe_mode.

    Args:
        model: model name (shipped or the user's) or path to a ``.keras`` file; None for the
            default VAE.
        kind: the class the file must hold (default :class:`GalaxyVAE`, which a :class:`Deblender`
            also is; :class:`LatentRegressor` for a regressor).

    Raises:
        ModelFileError: unknown name, missing file, hash mismatch, a file that is not a Keras
            archive, one that would need code execution (e.g. a Lambda layer), or one holding
            another kind of network.

    Returns:
        the network, with ``training_range``: the
        :class:`~lenstronomy_vae.networks.training_range.TrainingRange` of its manifest entry, None for
        a model without one (trained before ranges were recorded, or given by path); and ``latent_prior``:
        the :class:`~lenstronomy_vae.networks.latent_prior.LatentPrior` of its manifest entry, or None.
    """
    kind = kind or GalaxyVAE
    path, entry = resolve(model)
    if not path.is_file():
        raise ModelFileError(f"model file {str(path)!r} does not exist")
    if entry is not None and sha256_of(path) != entry["sha256"]:
        remedy = ("Reinstall the package." if path.parent == weights_dir()
                  else f"Train it again, or remove its entry from {path.parent / MANIFEST_NAME}.")
        raise ModelFileError(
            f"model file {str(path)!r} does not match its manifest: SHA-256 {sha256_of(path)} "
            f"!= {entry['sha256']}; the file is corrupt or was replaced. {remedy}"
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
    try:
        network.training_range = TrainingRange.from_manifest(entry)
    except (TypeError, ValueError) as error:
        raise ModelFileError(f"the manifest entry of {str(path)!r} has an unusable training_range ({error}); "
                             "repair or remove it") from None
    try:
        network.latent_prior = LatentPrior.from_manifest(entry)
        if network.latent_prior is not None:
            network.latent_prior.check_latent_dim(network.config.latent_dim)
    except (KeyError, TypeError, ValueError) as error:
        raise ModelFileError(f"the manifest entry of {str(path)!r} has an unusable latent_prior ({error}); "
                             "repair or remove it") from None
    return network


def load_vae(model=None):
    """Load a :class:`GalaxyVAE` safely (see :func:`load_network`).

    Args:
        model: model name (shipped or the user's) or path to a ``.keras`` file; None for the
            default model.
    """
    return load_network(model, GalaxyVAE)
