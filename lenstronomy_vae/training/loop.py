"""The resumable training loop: a checkpoint after every epoch, resumed when a run starts again.

Runs on a CPU, a GPU, or several GPUs through ``tf.distribute.MirroredStrategy``. Every file is
written under a temporary name and renamed, so a kill at any moment leaves a usable state.
"""

import json
import os
import pathlib
import time

import keras
import numpy as np
import tensorflow as tf

from lenstronomy_vae.utils.checks import check_count, check_positive, check_seed
from lenstronomy_vae.utils.files import atomic_path, write_json

STATE_NAME = "state.json"
CHECKPOINT_PATTERN = "epoch_{:04d}.keras"


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


def check_training_options(epochs, batch_size, learning_rate, seed, checkpoint_dir):
    """Raise ValueError naming the first unusable training option, before any data is read.

    ``epochs`` and ``batch_size`` must be positive integers, ``learning_rate`` a positive finite
    number, ``seed`` a non-negative integer and ``checkpoint_dir`` a directory or a path that
    does not exist yet.
    """
    check_count("epochs", epochs)
    check_count("batch_size", batch_size)
    check_positive("learning_rate", learning_rate)
    check_seed(seed)
    if pathlib.Path(checkpoint_dir).exists() and not pathlib.Path(checkpoint_dir).is_dir():
        raise ValueError(f"checkpoint directory {str(checkpoint_dir)!r} is a file, not a directory")


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


def cosine_adam(learning_rate, total_steps):
    """Adam with a cosine decay of the learning rate to 1 % over ``total_steps``."""
    return keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(learning_rate, total_steps, alpha=0.01))


def run_summary(state):
    """Epochs, final losses, seconds of the last run and hardware, from a :func:`fit_resumable` state."""
    return {
        "epochs": state["epochs_done"],
        "final_train_loss": state["history"][-1].get("loss"),
        "final_val_loss": state["history"][-1].get("val_loss"),
        "train_seconds_last_run": state.get("train_seconds_this_run"),
        "hardware": hardware(),
    }
