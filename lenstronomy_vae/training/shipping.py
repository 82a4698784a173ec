"""Shipping a trained network: export it to the weights directory with its manifest entry and data description."""

import pathlib

from lenstronomy_vae.networks.manifest import add_to_manifest, export_model


def ship(model, name, weights_dir, training_data, summary, kind, parent=None, default=False):
    """Export a trained network to ``weights_dir/name.keras`` and record it in the manifest.

    Returns:
        the summary with ``model_file`` and ``model_bytes`` added.
    """
    model_file = export_model(model, pathlib.Path(weights_dir) / f"{name}.keras")
    add_to_manifest(weights_dir, name, model_file, model, training_data, summary, default=default, kind=kind,
                    parent=parent)
    return {**summary, "model_file": str(model_file), "model_bytes": model_file.stat().st_size}


def training_data_entry(data, stamps, train_set, validation_set, held_out_set):
    """The manifest's description of a training set: file name, split sizes, simulation config."""
    return {"file": pathlib.Path(data).name, "train": len(train_set), "validation": len(validation_set),
            "held_out": len(held_out_set), "simulation": stamps.config.to_dict()}


def split_three(stamps, held_out, validation):
    """(held-out, validation, training) subsets of a GalaxySet or BlendSet, in that order of rows."""
    held_out_set, rest = stamps.split(held_out)
    validation_set, train_set = rest.split(validation)
    return held_out_set, validation_set, train_set
