"""Write shipped models and their manifest entries (name, architecture, constants, data, hash)."""

import datetime
import pathlib

from lenstronomy_vae.networks.model_files import MANIFEST_NAME, read_manifest, sha256_of
from lenstronomy_vae.utils.files import atomic_path, write_json


def export_model(model, path):
    """Save a trained network (VAE, deblender, regressor) without optimizer state, atomically, as ``.keras``."""
    clean = type(model).from_config(model.get_config())
    clean.set_weights(model.get_weights())
    with atomic_path(path) as temporary:
        clean.save(temporary)
    return pathlib.Path(path)


def add_to_manifest(directory, name, model_file, vae, training_data, metrics, default=False, kind="vae",
                    parent=None):
    """Record a model file in ``directory/manifest.json``.

    Args:
        directory: the weights directory.
        name: model name users pass as ``model=...``.
        model_file: the ``.keras`` file inside ``directory``.
        vae: the model (for its architecture and normalisation constants).
        training_data: dict describing the training set (simulator config, sizes).
        metrics: dict of held-out metrics (median SSIM, flux error, ...).
        default: make this the default model (VAEs only).
        kind: ``"vae"``, ``"deblender"`` or ``"regressor"``.
        parent: name of the model whose latent space a deblender or regressor uses.
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
        "created": datetime.date.today().isoformat(),
    }
    if kind == "vae" and (default or not manifest.get("default")):
        manifest["default"] = name
    write_json(directory / MANIFEST_NAME, manifest)
    return manifest
