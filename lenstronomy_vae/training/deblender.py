"""Train a deblender for a trained VAE: an encoder on blended scenes, into the frozen decoder's latent space.

As in Arcelin et al. (2021): the encoder starts from the VAE's and learns, from blends whose
target sits at the stamp centre, the latent vector from which the frozen decoder draws the target
alone.
"""

import numpy as np

from lenstronomy_vae.deblending.scene import survey_kernels
from lenstronomy_vae.evaluation.report import image_metrics, summarise
from lenstronomy_vae.networks.deblender import Deblender
from lenstronomy_vae.networks.manifest import check_new_model
from lenstronomy_vae.networks.model_files import load_vae
from lenstronomy_vae.networks.vae import KLWarmup
from lenstronomy_vae.sims.blends import BlendSet
from lenstronomy_vae.sims.rendering import convolve_bands
from lenstronomy_vae.training.arrays import deblender_arrays
from lenstronomy_vae.training.loop import check_training_options, cosine_adam, fit_resumable, run_summary
from lenstronomy_vae.training.shipping import (
    latent_prior_of,
    ship,
    split_three,
    training_data_entry,
    training_range_of,
)


def train_deblender(vae, train_set, validation_set, epochs, checkpoint_dir, latent_weight=0.0, batch_size=64,
                    learning_rate=1e-3, seed=0, strategy=None, verbose=2):
    """Train (or resume training) a :class:`Deblender` on blends for a trained VAE.

    The encoder starts from the VAE's encoder; the decoder stays frozen. The KL weight is the
    VAE's final one from the first epoch (the decoder already knows its latent space).

    Args:
        vae: a trained :class:`GalaxyVAE` whose bands and stamp size match the blends.
        train_set, validation_set: :class:`lenstronomy_vae.sims.blends.BlendSet` instances.
        epochs: total epochs planned (a resumed run trains only the remainder).
        checkpoint_dir: checkpoints and ``state.json``; an existing checkpoint is resumed.
        latent_weight: weight of the latent-space loss (0 disables it).
        batch_size, learning_rate, seed, strategy, verbose: as in
            :func:`lenstronomy_vae.training.vae.train_vae`.

    Returns:
        (deblender, state).

    Raises:
        ValueError: an unusable option (see :func:`lenstronomy_vae.training.loop.check_training_options`),
            or blends of another shape than the VAE's stamps.
    """
    check_training_options(epochs, batch_size, learning_rate, seed, checkpoint_dir)
    expected = (vae.config.image_size, vae.config.image_size, vae.config.num_bands)
    if train_set.blend.shape[1:] != expected:
        raise ValueError(f"blends have shape {train_set.blend.shape[1:]}; the VAE expects {expected} "
                         f"(bands {vae.config.bands})")

    def build(steps_per_epoch):
        deblender = Deblender.from_vae(vae, latent_weight=latent_weight, seed=seed)
        deblender.compile(optimizer=cosine_adam(learning_rate, epochs * steps_per_epoch))
        return deblender

    def arrays(deblender):
        return deblender_arrays(train_set, vae), deblender_arrays(validation_set, vae)

    final_kl = float(np.asarray(vae.kl_weight))
    return fit_resumable(build, arrays, len(train_set), epochs, checkpoint_dir, batch_size=batch_size, seed=seed,
                         strategy=strategy, callbacks=[KLWarmup(final_kl, final_kl, 1)], verbose=verbose)


def train_and_ship_deblender(data, vae, name, weights_dir, checkpoint_dir, epochs, latent_weight=0.0, held_out=500,
                             validation=500, batch_size=64, learning_rate=1e-3, seed=0, overwrite=False):
    """Train a deblender on a simulated blend set, measure it on held-out scenes, write it with its manifest entry.

    Args:
        data: HDF5 file of a :class:`lenstronomy_vae.sims.blends.BlendSet`.
        vae: VAE name (shipped or the user's) or ``.keras`` path whose decoder the deblender uses.
        name: model name in the manifest.
        weights_dir: model directory for the ``.keras`` file and ``manifest.json``; None for the
            user's (see :func:`lenstronomy_vae.training.shipping.ship`).
        checkpoint_dir: checkpoints; an interrupted run resumes from here.
        epochs, latent_weight, batch_size, learning_rate, seed: as in :func:`train_deblender`.
        held_out, validation: scenes kept for the final metrics and for the validation loss.
        overwrite: allow a name that is shipped or already in ``weights_dir``; the file it
            named is kept.

    Returns:
        dict: held-out σ(Δe), flux errors, SSIM, cosine similarity, losses, seconds, hardware. The
        manifest entry also records the training scenes' range (``training_range``, see
        :func:`lenstronomy_vae.training.shipping.training_range_of`), which field mode flags galaxies against, and
        the prior of MAP refinement (``latent_prior``: the VAE encoder's latent means of the training scenes'
        isolated noisy targets, :func:`lenstronomy_vae.training.shipping.latent_prior_of`).

    Raises:
        lenstronomy_vae.networks.ModelFileError: the name is taken (and not ``overwrite``) or unusable,
            or ``vae`` cannot be loaded; checked before training.
        ValueError: an unusable option or data file.
    """
    check_new_model(weights_dir, name, overwrite)
    check_training_options(epochs, batch_size, learning_rate, seed, checkpoint_dir)
    decoder_vae = load_vae(vae)
    blends = BlendSet.load_hdf5(data)
    held_out_set, validation_set, train_set = split_three(blends, held_out, validation)
    deblender, state = train_deblender(decoder_vae, train_set, validation_set, epochs, checkpoint_dir,
                                       latent_weight=latent_weight, batch_size=batch_size,
                                       learning_rate=learning_rate, seed=seed)
    images = convolve_bands(deblender.deblend(held_out_set.blend), survey_kernels(blends.survey, blends.bands))
    metrics = image_metrics({"deblender": images}, held_out_set)["deblender"]
    band = blends.survey.band_index(blends.config.measure_band)
    summary = {"held_out_scenes": len(held_out_set),
               **summarise(metrics["de"], metrics["flux_error"], metrics["ssim"], metrics["cosine"], band),
               **run_summary(state)}
    training_data = training_data_entry(data, blends, train_set, validation_set, held_out_set)
    training_range = training_range_of(train_set, deblender, encoder_input=train_set.blend,
                                       source=f"the {len(train_set)} training scenes of {training_data['file']}")
    latent_prior = latent_prior_of(decoder_vae, train_set.target_noisy,
                                   f"the isolated noisy targets of the training scenes of {training_data['file']}")
    return ship(deblender, name, weights_dir, training_data, summary, kind="deblender", parent=str(vae),
                overwrite=overwrite, training_range=training_range, latent_prior=latent_prior)
