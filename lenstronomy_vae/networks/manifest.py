"""Write models and their manifest entries (name, architecture, constants, data, hash), never replacing a file.

A model directory holds ``.keras`` files and ``manifest.json``, which maps each name to its file.
Writing a model never rewrites an existing file: it goes to a new file, then the manifest (written
atomically) names it. A name that is shipped, or already in the directory, is only reused when
the caller says ``overwrite``; the file it named stays where it is.
"""

import datetime
import os
import pathlib
import re

from lenstronomy_vae.networks.model_files import (
    MANIFEST_NAME,
    ModelFileError,
    read_manifest,
    sha256_of,
    shipped_models,
    user_models_dir,
)
from lenstronomy_vae.utils.files import atomic_path, write_json

# Letters, digits, '_', '-' and '.', not ending in '.keras': anything else would be read as a path.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def model_directory(directory=None):
    """``directory`` as a Path; None means the user's model directory (:func:`user_models_dir`)."""
    return pathlib.Path(directory).expanduser() if directory is not None else user_models_dir()


def check_new_model(directory, name, overwrite=False):
    """Refuse a model name or directory that writing would misuse; call it before training, and again to write.

    Args:
        directory: where the model will go; None for the user's model directory.
        name: the model name.
        overwrite: allow a name that is shipped or already in ``directory``'s manifest.

    Returns:
        the directory as a Path.

    Raises:
        ModelFileError: ``name`` is not a plain name; it is shipped or already in the
            directory and ``overwrite`` is False; ``directory`` is an existing file.
    """
    directory = model_directory(directory)
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name.endswith(".keras"):
        raise ModelFileError(f"model name {name!r} must start with a letter or digit and hold only letters, digits, "
                             "'_', '-' and '.' (and not end in '.keras')")
    if directory.exists() and not directory.is_dir():
        raise ModelFileError(f"model directory {str(directory)!r} is a file, not a directory")
    if overwrite:
        return directory
    if name in shipped_models():
        raise ModelFileError(f"{name!r} is a shipped model: choose another name, or pass --overwrite to write yours "
                             f"under that name (to a new file in {str(directory)!r}; the shipped file stays as it is)")
    if name in read_manifest(directory)["models"]:
        raise ModelFileError(f"model {name!r} already exists in {str(directory)!r}: choose another name, or pass "
                             "--overwrite to replace it (its file is kept)")
    return directory


def new_model_file(directory, name):
    """Claim a file name in ``directory`` that no file has yet: ``name.keras``, else ``name-2.keras``, ...

    The claim creates an empty file (exclusively, so two writers never get the same one); write
    the model over it with :func:`export_model` before a manifest names it.
    """
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for number in range(1, 10_000):
        path = directory / (f"{name}.keras" if number == 1 else f"{name}-{number}.keras")
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError:
            continue
        return path
    raise ModelFileError(f"{str(directory)!r} already holds 9,999 files for model {name!r}; remove old ones")


def export_model(model, path):
    """Save a trained network (VAE, deblender, regressor) without optimizer state, atomically, as ``.keras``."""
    clean = type(model).from_config(model.get_config())
    clean.set_weights(model.get_weights())
    with atomic_path(path) as temporary:
        clean.save(temporary)
    return pathlib.Path(path)


def add_to_manifest(directory, name, model_file, vae, training_data, metrics, default=False, kind="vae",
                    parent=None, training_range=None, latent_prior=None):
    """Record a model file in ``directory/manifest.json``, written atomically.

    Args:
        directory: the model directory.
        name: model name users pass as ``model=...``.
        model_file: the ``.keras`` file inside ``directory``.
        vae: the model (for its architecture and normalisation constants).
        training_data: dict describing the training set (simulator config, sizes).
        metrics: dict of held-out metrics (median SSIM, flux error, ...).
        default: make this the directory's default model (VAEs only). Nothing becomes the
            default otherwise: the user directory's default replaces the shipped one.
        kind: ``"vae"``, ``"deblender"`` or ``"regressor"``.
        parent: name of the model whose latent space a deblender or regressor uses.
        training_range: the range of the training stamps
            (:func:`lenstronomy_vae.networks.training_range.summarise_training_range`), which
            field mode flags deblended galaxies against; None records none.
        latent_prior: the ``latent_prior`` entry
            (:meth:`lenstronomy_vae.networks.latent_prior.LatentPrior.to_manifest`), the prior of MAP
            refinement; None records none.
    """
    directory = pathlib.Path(directory)
    manifest = read_manifest(directory)
    model_file = pathlib.Path(model_file)
    manifest["models"][name] = {
        "file": model_file.name,
        "kind": kind,
        **({"parent": parent} if parent else {}),
        "sha256": sha256_of(model_file),
        "size_bytes": model_file.stat().st_size,
        "architecture": vae.config.to_dict(),
        "latent_dim": vae.config.latent_dim,
        "image_size": vae.config.image_size,
        "pixel_scale": vae.config.pixel_scale,
        "bands": list(vae.config.bands),
        "normalization": {"beta": vae.normalization.beta, "band_max": vae.normalization.band_max.tolist()},
        "training_data": training_data,
        "metrics": metrics,
        **({"training_range": training_range} if training_range else {}),
        **({"latent_prior": latent_prior} if latent_prior else {}),
        "created": datetime.date.today().isoformat(),
    }
    manifest.setdefault("default", None)
    if kind == "vae" and default:
        manifest["default"] = name
    write_json(directory / MANIFEST_NAME, manifest)
    return manifest
