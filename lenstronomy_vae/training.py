"""Train a galaxy VAE on simulated stamps, with a checkpoint every epoch and resumption.

The encoder sees the observed stamp (PSF-convolved, noisy); the decoder is scored against the
intrinsic stamp (no PSF, no noise) with χ² weights from the pixel noise, so the decoder learns
the galaxies lenstronomy will convolve with a PSF itself. Runs on a CPU, a GPU, or several GPUs
through ``tf.distribute.MirroredStrategy``.
"""

import json
import os
import pathlib
import time

import keras
import numpy as np
import tensorflow as tf

from lenstronomy_vae.io import atomic_path, write_json
from lenstronomy_vae.normalization import ArcsinhTanhNormalization
from lenstronomy_vae.vae import GalaxyVAE, KLWarmup, VAEConfig

STATE_NAME = "state.json"
CHECKPOINT_PATTERN = "epoch_{:04d}.keras"


# Normalised-unit error added in quadrature to the propagated pixel noise. Without it the χ² weight
# of a bright core grows like (1 + u²)³ and the normalisation's compression is undone.
MODEL_ERROR = 0.02


def load_stamp_set(path):
    """A :class:`~lenstronomy_vae.simulate.GalaxySet` or :class:`~lenstronomy_vae.blends.BlendSet` from HDF5.

    Both have ``observed``, ``intrinsic`` and ``noise_sigma`` (a BlendSet's are its isolated
    targets'), ``bands``, ``pixel_scale`` and ``split``: what VAE training reads.
    """
    import h5py

    from lenstronomy_vae import blends, simulate

    with h5py.File(path, "r") as f:
        file_format = f.attrs.get("format")
    kinds = {simulate.FILE_FORMAT: simulate.GalaxySet, blends.FILE_FORMAT: blends.BlendSet}
    if file_format not in kinds:
        raise ValueError(f"{path} holds neither galaxies nor blends (format attribute {file_format!r}); "
                         "write it with 'lenstronomy-vae simulate' or 'simulate-blends'")
    return kinds[file_format].load_hdf5(path)


def training_arrays(galaxies, normalization, model_error=MODEL_ERROR, observed=None):
    """Normalised (observed, target, χ² weight) float32 arrays (n, H, W, C) of a GalaxySet or BlendSet.

    The weight of a pixel is 1 / (σ_y² + model_error²), σ_y being the survey noise propagated into
    normalised units at the intrinsic (target) value. ``observed`` replaces the set's own
    observed stamps (a deblender sees the blends, ``BlendSet.blend``).
    """
    observed = galaxies.observed if observed is None else observed
    for name, stamps in (("observed", observed), ("intrinsic", galaxies.intrinsic)):
        bad = ~np.isfinite(stamps)
        if bad.any():
            raise ValueError(
                f"{name} stamps hold {int(bad.sum())} NaN or infinite pixel(s), first in galaxy "
                f"{int(np.argwhere(bad)[0][0])}; remove those galaxies before training"
            )
    observed = normalization.normalize(observed.astype(np.float64))
    target = normalization.normalize(galaxies.intrinsic.astype(np.float64))
    sigma = galaxies.noise_sigma[:, None, None, :]
    noise_variance = 1.0 / normalization.inverse_variance(galaxies.intrinsic.astype(np.float64), sigma)
    weight = 1.0 / (noise_variance + model_error**2)
    return tuple(a.astype(np.float32) for a in (observed, target, weight))


def make_dataset(arrays, batch_size, seed=None, shuffle=True):
    """A batched tf.data pipeline of (observed, target, weight); shuffled with ``seed``."""
    dataset = tf.data.Dataset.from_tensor_slices(arrays)
    if shuffle:
        dataset = dataset.shuffle(len(arrays[0]), seed=seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def default_strategy():
    """MirroredStrategy over every GPU when there are several, else the default strategy."""
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


class EpochCheckpoint(keras.callbacks.Callback):
    """Save the whole model (weights, optimizer, KL weight) and the epoch count after each epoch.

    The model goes to ``epoch_NNNN.keras``, then ``state.json`` (the one commit point) names it,
    then older checkpoints are deleted; every file is written under a temporary name and
    renamed. A kill at any moment leaves a state that names a complete checkpoint.
    """

    def __init__(self, directory):
        super().__init__()
        self.directory = pathlib.Path(directory)

    def on_epoch_end(self, epoch, logs=None):
        name = CHECKPOINT_PATTERN.format(epoch + 1)
        with atomic_path(self.directory / name) as temporary:
            self.model.save(temporary)
        history = read_state(self.directory).get("history", [])
        history.append({key: float(value) for key, value in (logs or {}).items()})
        write_json(self.directory / STATE_NAME, {"epochs_done": epoch + 1, "checkpoint": name, "history": history})
        remove_stale_files(self.directory)


def read_state(directory):
    """Checkpoint state ``{"epochs_done", "checkpoint", "history"}``; empty when none exists."""
    path = pathlib.Path(directory) / STATE_NAME
    if not path.is_file():
        return {}
    with open(path) as f:
        return json.load(f)


def checkpoint_path(directory):
    """Path of the checkpoint the state names, or None before the first epoch."""
    state = read_state(directory)
    return pathlib.Path(directory) / state["checkpoint"] if state else None


def remove_stale_files(directory):
    """Delete checkpoints the state does not name and temporaries left by a killed run."""
    directory = pathlib.Path(directory)
    current = read_state(directory).get("checkpoint")
    stale = [path for path in directory.glob("epoch_*.keras") if path.name != current]
    stale += list(directory.glob(".epoch_*.keras")) + list(directory.glob(".state.*.json"))
    for path in stale:
        path.unlink(missing_ok=True)


def fit_resumable(build, arrays, n_train, epochs, checkpoint_dir, batch_size=64, seed=0, strategy=None,
                  callbacks=(), verbose=2):
    """Fit a Keras model with a checkpoint every epoch; resume from ``checkpoint_dir`` if one exists.

    Args:
        build: ``build(steps_per_epoch)`` → a new compiled model (called in the strategy's scope).
        arrays: ``arrays(model)`` → (training arrays, validation arrays), tuples for
            :func:`make_dataset`; called after building or loading, so it can use the model's
            normalisation.
        n_train: number of training samples (for the steps per epoch).
        epochs: total number of epochs planned (a resumed run trains only the remainder).
        checkpoint_dir: directory of the checkpoints and ``state.json``.
        batch_size: global batch size (split across replicas).
        seed: seed of the weights and the shuffling.
        strategy: a tf.distribute strategy; default: MirroredStrategy when several GPUs exist.
        callbacks: further Keras callbacks.
        verbose: Keras verbosity.

    Returns:
        (model, state): the trained model and the checkpoint state (epochs done, loss history,
        ``train_seconds_this_run``).
    """
    keras.utils.set_random_seed(seed)
    strategy = strategy or default_strategy()
    checkpoint_dir = pathlib.Path(checkpoint_dir)
    remove_stale_files(checkpoint_dir)
    state = read_state(checkpoint_dir)
    epochs_done = state.get("epochs_done", 0)
    with strategy.scope():
        if epochs_done:
            model = keras.saving.load_model(checkpoint_path(checkpoint_dir), safe_mode=True)
        else:
            model = build(int(np.ceil(n_train / batch_size)))
    if epochs_done >= epochs:
        return model, state
    train_arrays, validation_arrays = arrays(model)
    start = time.perf_counter()
    model.fit(
        make_dataset(train_arrays, batch_size, seed=seed + epochs_done),
        validation_data=make_dataset(validation_arrays, batch_size, shuffle=False),
        epochs=epochs,
        initial_epoch=epochs_done,
        callbacks=[*callbacks, EpochCheckpoint(checkpoint_dir)],
        shuffle=False,  # the tf.data pipeline shuffles, with the seed
        verbose=verbose,
    )
    state = read_state(checkpoint_dir)
    state["train_seconds_this_run"] = time.perf_counter() - start
    return model, state


def hardware():
    """What training ran on, e.g. ``"2 CPU cores, 0 GPU(s)"``."""
    return f"{os.cpu_count()} CPU cores, {len(tf.config.list_physical_devices('GPU'))} GPU(s)"


def ship(model, name, weights_dir, training_data, summary, kind, parent=None, default=False):
    """Export a trained network to ``weights_dir/name.keras`` and record it in the manifest.

    Returns:
        the summary with ``model_file`` and ``model_bytes`` added.
    """
    from lenstronomy_vae.manifest import add_to_manifest, export_model

    model_file = export_model(model, pathlib.Path(weights_dir) / f"{name}.keras")
    add_to_manifest(weights_dir, name, model_file, model, training_data, summary, default=default, kind=kind,
                    parent=parent)
    return {**summary, "model_file": str(model_file), "model_bytes": model_file.stat().st_size}


def run_summary(state):
    """Epochs, final losses, seconds of the last run and hardware, from a :func:`fit_resumable` state."""
    return {
        "epochs": state["epochs_done"],
        "final_train_loss": state["history"][-1].get("loss"),
        "final_val_loss": state["history"][-1].get("val_loss"),
        "train_seconds_last_run": state.get("train_seconds_this_run"),
        "hardware": hardware(),
    }


def training_data_entry(data, stamps, train_set, validation_set, held_out_set):
    """The manifest's description of a training set: file name, split sizes, simulation config."""
    return {"file": pathlib.Path(data).name, "train": len(train_set), "validation": len(validation_set),
            "held_out": len(held_out_set), "simulation": stamps.config.to_dict()}


def split_three(stamps, held_out, validation):
    """(held-out, validation, training) subsets of a GalaxySet or BlendSet, in that order of rows."""
    held_out_set, rest = stamps.split(held_out)
    validation_set, train_set = rest.split(validation)
    return held_out_set, validation_set, train_set


def cosine_adam(learning_rate, total_steps):
    """Adam with a cosine decay of the learning rate to 1 % over ``total_steps``."""
    return keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(learning_rate, total_steps, alpha=0.01))


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
    strategy=None,
    verbose=2,
):
    """Train (or resume training) a :class:`GalaxyVAE`.

    Args:
        train_set, validation_set: :class:`lenstronomy_vae.simulate.GalaxySet` or
            :class:`lenstronomy_vae.blends.BlendSet` instances (a BlendSet's isolated targets).
        config: :class:`VAEConfig`; its image size and band count must match the data.
        epochs: total number of epochs planned (a resumed run trains only the remainder).
        checkpoint_dir: directory for the checkpoints and ``state.json``; an existing checkpoint
            there is resumed.
        batch_size: global batch size (split across replicas).
        learning_rate: Adam learning rate, decayed by cosine to 1 % over the planned steps.
        kl_warmup_epochs: epochs over which the KL weight rises from 0 to 1.
        seed: seed of the weights, the sampling layer and the shuffling.
        strategy: a tf.distribute strategy; default: MirroredStrategy when several GPUs exist.
        verbose: Keras verbosity.

    Returns:
        (vae, state): the trained model and the checkpoint state (epochs done, loss history).
    """
    expected = (config.image_size, config.image_size, config.num_bands)
    if train_set.observed.shape[1:] != expected:
        raise ValueError(f"training stamps have shape {train_set.observed.shape[1:]}; the model expects {expected}")

    def build(steps_per_epoch):
        vae = GalaxyVAE(config, ArcsinhTanhNormalization.fit(train_set.intrinsic), kl_weight=0.0, seed=seed)
        vae.compile(optimizer=cosine_adam(learning_rate, epochs * steps_per_epoch))
        return vae

    def arrays(vae):
        return training_arrays(train_set, vae.normalization), training_arrays(validation_set, vae.normalization)

    return fit_resumable(build, arrays, len(train_set), epochs, checkpoint_dir, batch_size=batch_size, seed=seed,
                         strategy=strategy, callbacks=[KLWarmup(0.0, 1.0, kl_warmup_epochs)], verbose=verbose)


def train_and_ship(data, name, weights_dir, checkpoint_dir, epochs, config_options=None, held_out=1000,
                   validation=1000, batch_size=64, learning_rate=1e-3, kl_warmup_epochs=5, seed=0, default=False):
    """Train a VAE on a simulated HDF5 set, measure it on held-out galaxies, ship it with its manifest entry.

    Args:
        data: HDF5 file of a GalaxySet or a BlendSet (see :func:`load_stamp_set`).
        name: model name in the manifest (users pass it as ``model=...``).
        weights_dir: directory of the shipped ``.keras`` files and ``manifest.json``.
        checkpoint_dir: checkpoints; an interrupted run resumes from here.
        epochs: planned epochs.
        config_options: :class:`VAEConfig` fields other than image size, bands and pixel scale
            (which come from the data).
        held_out, validation: galaxies kept for the final metrics and for the validation loss.
        batch_size, learning_rate, kl_warmup_epochs, seed: as in :func:`train_vae`.
        default: make this the default shipped model.

    Returns:
        dict: held-out median SSIM and relative flux errors, losses, seconds, hardware, file size.
    """
    from lenstronomy_vae.evaluate import reconstruction_metrics

    galaxies = load_stamp_set(data)
    held_out_set, validation_set, train_set = split_three(galaxies, held_out, validation)
    config = VAEConfig(image_size=galaxies.observed.shape[1], bands=tuple(galaxies.bands),
                       pixel_scale=galaxies.pixel_scale, **(config_options or {}))
    vae, state = train_vae(train_set, validation_set, config, epochs, checkpoint_dir, batch_size=batch_size,
                           learning_rate=learning_rate, kl_warmup_epochs=kl_warmup_epochs, seed=seed)
    metrics = reconstruction_metrics(vae, held_out_set)
    summary = {
        "held_out_galaxies": len(held_out_set),
        "median_ssim": metrics["median_ssim"],
        "median_abs_flux_error": metrics["median_abs_flux_error"],
        "median_flux_error": metrics["median_flux_error"],
        **run_summary(state),
    }
    training_data = training_data_entry(data, galaxies, train_set, validation_set, held_out_set)
    return ship(vae, name, weights_dir, training_data, summary, kind="vae", default=default)
