"""Train a galaxy VAE on simulated stamps, measure it on held-out galaxies and ship it.

The encoder sees the observed stamp (PSF-convolved, noisy); the decoder is scored against the
intrinsic stamp (no PSF, no noise) with χ² weights from the pixel noise, so the decoder learns
the galaxies lenstronomy will convolve with a PSF itself.
"""

from lenstronomy_vae.evaluation.reconstruction import reconstruction_metrics
from lenstronomy_vae.networks.manifest import check_new_model
from lenstronomy_vae.networks.normalization import ArcsinhTanhNormalization
from lenstronomy_vae.networks.vae import GalaxyVAE, KLWarmup, VAEConfig
from lenstronomy_vae.sims.blends import BlendSet
from lenstronomy_vae.sims.datasets import file_format
from lenstronomy_vae.sims.galaxies import GalaxySet
from lenstronomy_vae.training.arrays import training_arrays
from lenstronomy_vae.training.loop import check_training_options, cosine_adam, fit_resumable, run_summary
from lenstronomy_vae.training.shipping import (
    latent_prior_of,
    ship,
    split_three,
    training_data_entry,
    training_range_of,
)
from lenstronomy_vae.utils.checks import check_count


def load_stamp_set(path):
    """A :class:`~lenstronomy_vae.sims.galaxies.GalaxySet` or :class:`~lenstronomy_vae.sims.blends.BlendSet` from HDF5.

    Both have ``observed``, ``intrinsic`` and ``noise_sigma`` (a BlendSet's are its isolated
    targets'), ``bands``, ``pixel_scale`` and ``split``: what VAE training reads.

    Raises:
        FileNotFoundError, ValueError: a missing file, or one that holds neither.
    """
    kinds = {GalaxySet.FILE_FORMAT: GalaxySet, BlendSet.FILE_FORMAT: BlendSet}
    found = file_format(path)
    if found not in kinds:
        raise ValueError(f"{path} holds neither galaxies nor blends (format attribute {found!r}); write it with "
                         "'lenstronomy-vae simulate' or 'simulate-blends'")
    return kinds[found].load_hdf5(path)


def train_vae(
    train_set,
    validation_set,
    config,
    epochs,
    checkpoint_dir,
    batch_size=64,
    learning_rate=1e-3,
    kl_warmup_epochs=5,
    seed=0,
    augment=False,
    strategy=None,
    verbose=2,
):
    """Train (or resume training) a :class:`GalaxyVAE`.

    Args:
        train_set, validation_set: :class:`lenstronomy_vae.sims.galaxies.GalaxySet` or
            :class:`lenstronomy_vae.sims.blends.BlendSet` instances (a BlendSet's isolated targets).
        config: :class:`VAEConfig`; its image size and band count must match the data.
        epochs: total number of epochs planned (a resumed run trains only the remainder).
        checkpoint_dir: directory for the checkpoints and ``state.json``; an existing checkpoint
            there is resumed.
        batch_size: global batch size (split across replicas).
        learning_rate: Adam learning rate, decayed by cosine to 1 % over the planned steps.
        kl_warmup_epochs: epochs over which the KL weight rises from 0 to 1.
        seed: seed of the weights, the sampling layer, the orientations and the shuffling.
        augment: train every stamp in a random one of its eight orientations (see :class:`GalaxyVAE`).
        strategy: a tf.distribute strategy; default: MirroredStrategy when several GPUs exist.
        verbose: Keras verbosity.

    Returns:
        (vae, state): the trained model and the checkpoint state (epochs done, loss history).

    Raises:
        ValueError: an unusable option (see :func:`lenstronomy_vae.training.loop.check_training_options`),
            a negative ``kl_warmup_epochs``, or stamps of another shape than ``config``'s.
    """
    check_training_options(epochs, batch_size, learning_rate, seed, checkpoint_dir)
    if isinstance(kl_warmup_epochs, bool) or not isinstance(kl_warmup_epochs, int) or kl_warmup_epochs < 0:
        raise ValueError(f"kl_warmup_epochs must be a non-negative integer, got {kl_warmup_epochs!r}")
    expected = (config.image_size, config.image_size, config.num_bands)
    if train_set.observed.shape[1:] != expected:
        raise ValueError(f"training stamps have shape {train_set.observed.shape[1:]}; the model expects {expected}")

    def build(steps_per_epoch):
        vae = GalaxyVAE(config, ArcsinhTanhNormalization.fit(train_set.intrinsic), kl_weight=0.0, seed=seed,
                        augment=augment)
        vae.compile(optimizer=cosine_adam(learning_rate, epochs * steps_per_epoch))
        return vae

    def arrays(vae):
        return training_arrays(train_set, vae.normalization), training_arrays(validation_set, vae.normalization)

    return fit_resumable(build, arrays, len(train_set), epochs, checkpoint_dir, batch_size=batch_size, seed=seed,
                         strategy=strategy, callbacks=[KLWarmup(0.0, 1.0, kl_warmup_epochs)], verbose=verbose)


def train_and_ship(data, name, weights_dir, checkpoint_dir, epochs, config_options=None, held_out=1000,
                   validation=1000, batch_size=64, learning_rate=1e-3, kl_warmup_epochs=5, seed=0, augment=False,
                   default=False, overwrite=False):
    """Train a VAE on a simulated HDF5 set, measure it on held-out galaxies, write it with its manifest entry.

    Args:
        data: HDF5 file of a GalaxySet or a BlendSet (see :func:`load_stamp_set`).
        name: model name in the manifest (users pass it as ``model=...``).
        weights_dir: model directory for the ``.keras`` file and ``manifest.json``; None for the
            user's (see :func:`lenstronomy_vae.training.shipping.ship`).
        checkpoint_dir: checkpoints; an interrupted run resumes from here.
        epochs: planned epochs.
        config_options: :class:`VAEConfig` fields other than image size, bands and pixel scale
            (which come from the data): positive integers (``latent_dim``, ``dense_units``) or
            sequences of them (``encoder_filters``, ``decoder_filters``).
        held_out, validation: galaxies kept for the final metrics and for the validation loss.
        batch_size, learning_rate, kl_warmup_epochs, seed, augment: as in :func:`train_vae`.
        default: make this the default model (the one used when no model is named).
        overwrite: allow a name that is shipped or already in ``weights_dir``; the file it
            named is kept.

    Returns:
        dict: held-out median SSIM and relative flux errors, losses, seconds, hardware, file size. The
        manifest entry also records the training stamps' range (``training_range``, see
        :func:`lenstronomy_vae.training.shipping.training_range_of`) and the latent prior of MAP refinement
        (``latent_prior``, :func:`lenstronomy_vae.training.shipping.latent_prior_of`, from the training stamps).

    Raises:
        lenstronomy_vae.networks.ModelFileError: the name is taken (and not ``overwrite``) or unusable;
            checked before training.
        ValueError: an unusable option or data file.
    """
    check_new_model(weights_dir, name, overwrite)
    check_training_options(epochs, batch_size, learning_rate, seed, checkpoint_dir)
    for key, value in (config_options or {}).items():
        for number in (value if key.endswith("_filters") else [value]):
            check_count(key, number)
    galaxies = load_stamp_set(data)
    held_out_set, validation_set, train_set = split_three(galaxies, held_out, validation)
    config = VAEConfig(image_size=galaxies.observed.shape[1], bands=tuple(galaxies.bands),
                       pixel_scale=galaxies.pixel_scale, **(config_options or {}))
    vae, state = train_vae(train_set, validation_set, config, epochs, checkpoint_dir, batch_size=batch_size,
                           learning_rate=learning_rate, kl_warmup_epochs=kl_warmup_epochs, seed=seed, augment=augment)
    metrics = reconstruction_metrics(vae, held_out_set)
    summary = {
        "held_out_galaxies": len(held_out_set),
        "median_ssim": metrics["median_ssim"],
        "median_abs_flux_error": metrics["median_abs_flux_error"],
        "median_flux_error": metrics["median_flux_error"],
        "augmented": bool(augment),
        **run_summary(state),
    }
    training_data = training_data_entry(data, galaxies, train_set, validation_set, held_out_set)
    training_range = training_range_of(train_set, vae,
                                       source=f"the {len(train_set)} training stamps of {training_data['file']}")
    latent_prior = latent_prior_of(vae, train_set.observed, f"the first training stamps of {training_data['file']}")
    return ship(vae, name, weights_dir, training_data, summary, kind="vae", default=default, overwrite=overwrite,
                training_range=training_range, latent_prior=latent_prior)
