"""Shipping a trained network: a new file in a model directory, with its manifest entry and data description."""

import pathlib

import numpy as np

from lenstronomy_vae.deblending.scene_model import stamp_measures
from lenstronomy_vae.networks.decoding import encode
from lenstronomy_vae.networks.latent_prior import LatentPrior
from lenstronomy_vae.networks.manifest import add_to_manifest, check_new_model, export_model, new_model_file
from lenstronomy_vae.networks.training_range import summarise_training_range
from lenstronomy_vae.sims.shapes import adaptive_moments_size
from lenstronomy_vae.utils.checks import check_count


def ship(model, name, weights_dir, training_data, summary, kind, parent=None, default=False, overwrite=False,
         training_range=None, latent_prior=None):
    """Export a trained network to a new ``.keras`` file in ``weights_dir`` and record it in the manifest.

    No existing file is written over: the model goes to ``name.keras`` (``name-2.keras``, ...
    when taken), then the manifest names it.

    Args:
        model: the trained network.
        name: model name in the manifest.
        weights_dir: the model directory; None for the user's (``$LENSTRONOMY_VAE_HOME/models``,
            default ``~/.lenstronomy_vae/models``).
        training_data, summary: the manifest's data description and metrics.
        kind, parent, default: as in :func:`lenstronomy_vae.networks.manifest.add_to_manifest`.
        overwrite: allow a name that is shipped or already in ``weights_dir``.
        training_range: the manifest's ``training_range`` entry (:func:`training_range_of`); None for none.
        latent_prior: the manifest's ``latent_prior`` entry (:func:`latent_prior_of`); None for none.

    Returns:
        the summary with ``model_file`` and ``model_bytes`` added.

    Raises:
        lenstronomy_vae.networks.ModelFileError: see
            :func:`lenstronomy_vae.networks.manifest.check_new_model`.
    """
    directory = check_new_model(weights_dir, name, overwrite)
    model_file = new_model_file(directory, name)
    try:
        export_model(model, model_file)
    except BaseException:
        model_file.unlink()  # the empty file that claimed the name
        raise
    add_to_manifest(directory, name, model_file, model, training_data, summary, default=default, kind=kind,
                    parent=parent, training_range=training_range, latent_prior=latent_prior)
    return {**summary, "model_file": str(model_file), "model_bytes": model_file.stat().st_size}


# Stamps whose latent means make a latent prior: the mean and σ of 2,000 draws are good to ~2 % of σ.
LATENT_PRIOR_STAMPS = 2000


def latent_prior_of(vae, stamps, source):
    """The ``latent_prior`` manifest entry: the VAE encoder's latent means of isolated galaxies (see
    :mod:`lenstronomy_vae.networks.latent_prior`).

    Args:
        vae: the VAE whose encoder places the galaxies (a deblender's parent, for a deblender).
        stamps: (n, H, W, bands) noisy isolated galaxies as the VAE's encoder reads them [image units]; the
            first :data:`LATENT_PRIOR_STAMPS` are used.
        source: where the stamps came from, recorded with the prior.
    """
    stamps = stamps[:LATENT_PRIOR_STAMPS]
    return LatentPrior.of_latents(encode(vae, stamps)).to_manifest(len(stamps), source)


def training_data_entry(data, stamps, train_set, validation_set, held_out_set):
    """The manifest's description of a training set: file name, split sizes, simulation config."""
    return {"file": pathlib.Path(data).name, "train": len(train_set), "validation": len(validation_set),
            "held_out": len(held_out_set), "simulation": stamps.config.to_dict()}


def split_three(stamps, held_out, validation):
    """(held-out, validation, training) subsets of a GalaxySet or BlendSet, in that order of rows.

    Raises:
        ValueError: ``held_out`` or ``validation`` is not a positive integer, or together they
            leave nothing to train on.
    """
    check_count("held_out", held_out)
    check_count("validation", validation)
    if held_out + validation >= len(stamps):
        raise ValueError(f"held_out ({held_out}) + validation ({validation}) must be below the {len(stamps)} "
                         "items of the set, to leave some to train on")
    held_out_set, rest = stamps.split(held_out)
    validation_set, train_set = rest.split(validation)
    return held_out_set, validation_set, train_set


def training_range_of(stamps, network, encoder_input=None, source=None, batch_size=500):
    """The ``training_range`` manifest entry of a training set, for the network that learnt from it.

    See :mod:`lenstronomy_vae.networks.training_range`: per band, the normalised peak and the sum of
    each encoder input stamp, the total flux of each target (intrinsic stamp), and the adaptive-moment
    size of each noisy isolated target (``observed``) in the ``i`` band, else the first.

    Args:
        stamps: the training :class:`~lenstronomy_vae.sims.galaxies.GalaxySet` or
            :class:`~lenstronomy_vae.sims.blends.BlendSet`.
        network: the trained network (its normalisation and bands).
        encoder_input: (n, H, W, bands) what the encoder read, default ``stamps.observed``
            (a deblender reads ``stamps.blend``).
        source: a sentence saying what the stamps are; default the simulation's seed and size.
        batch_size: stamps normalised at a time (memory).
    """
    encoder_input = stamps.observed if encoder_input is None else encoder_input
    bands = list(network.config.bands)
    size_band = "i" if "i" in bands else bands[0]
    b = bands.index(size_band)
    peaks, stamp_fluxes = [], []
    for start in range(0, len(encoder_input), batch_size):
        peak, flux = stamp_measures(network, encoder_input[start:start + batch_size])
        peaks.append(peak)
        stamp_fluxes.append(flux)
    fluxes = stamps.intrinsic.sum(axis=(1, 2), dtype=np.float64)
    sizes = [adaptive_moments_size(stamp[..., b], stamps.pixel_scale) for stamp in stamps.observed]
    source = source or f"{len(stamps)} training stamps simulated with seed {stamps.seed}"
    return summarise_training_range(np.concatenate(peaks), np.concatenate(stamp_fluxes), fluxes, sizes, bands,
                                    size_band, stamps.survey.flux_unit, source)
