"""The same seed gives the same galaxies, lens, training batches, training run and fit (on this CPU).

Training: TensorFlow on a CPU, with the same thread pools, runs the same kernels in the same
order, so two ``train_vae`` runs with the same seed agree bit for bit here, without
``tf.config.experimental.enable_op_determinism()`` (which would be needed on a GPU, where
atomics make reductions order-dependent). The test asserts exact equality for that reason.
"""

import pathlib
import sys

import keras
import numpy as np
import pytest

from lenstronomy_vae.lensing.lens_fit import FitSettings, fit_lens, particles_per_start
from lenstronomy_vae.lensing.lens_simulation import LensSettings, simulate_lens
from lenstronomy_vae.networks.vae import VAEConfig
from lenstronomy_vae.sims.galaxies import GalaxySimConfig, simulate_galaxies
from lenstronomy_vae.training.loop import make_dataset
from lenstronomy_vae.training.vae import train_vae

HERE = pathlib.Path(__file__).resolve().parents[1] / "scripts"  # fit_script.py, train_script.py
REPO = pathlib.Path(__file__).resolve().parents[2]
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import fit_script  # noqa: E402  (tests/scripts/fit_script.py)

CONFIG = VAEConfig(image_size=64, latent_dim=4, encoder_filters=(4, 8, 8, 8), decoder_filters=(8, 8, 4, 4),
                   dense_units=16)
TINY_LENS = LensSettings(num_pix=24, pixel_scale=0.08)
QUICK_FIT = FitSettings(pso_particles=8, pso_iterations=3, lm_iterations=3, walker_ratio=2, mcmc_burn=1, mcmc_run=2,
                        progress=False)


@pytest.fixture(scope="module")
def galaxies():
    return simulate_galaxies(32, GalaxySimConfig(source="parametric"), seed=21)


def test_simulate_galaxies_same_seed_same_galaxies(galaxies):
    again = simulate_galaxies(32, GalaxySimConfig(source="parametric"), seed=21)
    for name in ("intrinsic", "convolved", "observed", "noise_sigma"):
        np.testing.assert_array_equal(getattr(again, name), getattr(galaxies, name), err_msg=name)
    for field in galaxies.truth.dtype.names:  # per field: NaN (no redshift) equals NaN
        np.testing.assert_array_equal(again.truth[field], galaxies.truth[field], err_msg=field)
    other = simulate_galaxies(4, GalaxySimConfig(source="parametric"), seed=22)
    assert not np.array_equal(other.observed, galaxies.observed[:4])


def test_simulate_lens_same_seed_same_lens():
    """The whole path: the source galaxy is simulated from the seed too (``source_stamp=None``)."""
    first = simulate_lens(seed=4, settings=TINY_LENS)
    second = simulate_lens(seed=4, settings=TINY_LENS)
    np.testing.assert_array_equal(second.source_stamp, first.source_stamp)
    np.testing.assert_array_equal(second.kwargs_data["image_data"], first.kwargs_data["image_data"])
    other = simulate_lens(seed=5, settings=TINY_LENS)
    assert not np.array_equal(other.kwargs_data["image_data"], first.kwargs_data["image_data"])


def first_batches(arrays, seed, n_batches=3, epochs=2):
    """The first batches of ``epochs`` passes over a fresh make_dataset pipeline, as train_vae seeds it."""
    keras.utils.set_random_seed(0)  # train_vae sets the global seed too; the order depends on both seeds
    dataset = make_dataset(arrays, batch_size=4, seed=seed)
    return [[tuple(t.numpy() for t in batch) for batch in dataset.take(n_batches)] for _ in range(epochs)]


def test_training_batches_are_the_same_for_the_same_seed():
    rng = np.random.default_rng(0)
    arrays = tuple(rng.normal(size=(24, 8, 8, 1)).astype(np.float32) for _ in range(3))
    arrays[0][:, 0, 0, 0] = np.arange(24)  # an id per stamp, to read the order
    first, second = first_batches(arrays, seed=7), first_batches(arrays, seed=7)
    for epoch_a, epoch_b in zip(first, second):
        for batch_a, batch_b in zip(epoch_a, epoch_b):
            for a, b in zip(batch_a, batch_b):
                np.testing.assert_array_equal(a, b)
    order = [batch[0][:, 0, 0, 0].tolist() for batch in first[0]]
    assert sorted(sum(order, [])) != sum(order, [])  # shuffled...
    assert [batch[0][:, 0, 0, 0].tolist() for batch in first[1]] != order  # ...again each epoch
    # The three arrays stay aligned through the shuffle.
    ids = first[0][0][0][:, 0, 0, 0].astype(int)
    np.testing.assert_array_equal(first[0][0][1], arrays[1][ids])
    other = first_batches(arrays, seed=8)
    assert [batch[0][:, 0, 0, 0].tolist() for batch in other[0]] != order


def train(galaxies, tmp_path, name, seed):
    validation, training = galaxies.split(8)
    return train_vae(training, validation, CONFIG, epochs=2, checkpoint_dir=tmp_path / name, batch_size=8,
                     seed=seed, verbose=0)


@pytest.mark.slow
def test_training_twice_with_the_same_seed_gives_the_same_losses_and_weights(galaxies, tmp_path):
    vae_a, state_a = train(galaxies, tmp_path, "a", seed=4)
    vae_b, state_b = train(galaxies, tmp_path, "b", seed=4)
    assert len(state_a["history"]) == 2
    assert state_b["history"] == state_a["history"]  # bit-identical on this CPU (see the module docstring)
    for a, b in zip(vae_a.get_weights(), vae_b.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert state_a["history"][1]["loss"] != state_a["history"][0]["loss"]  # it did train


def test_fit_lens_twice_with_the_same_seed_gives_the_same_fit(galaxy_model_path):
    simulation = fit_script.lens_simulation(galaxy_model_path)  # a 24² lens of the tiny model's galaxy
    first = fit_lens(simulation, model=galaxy_model_path, settings=QUICK_FIT, seed=2)
    second = fit_lens(simulation, model=galaxy_model_path, settings=QUICK_FIT, seed=2)
    assert second["kwargs_result"] == first["kwargs_result"]
    np.testing.assert_array_equal(second["samples"], first["samples"])
    other = fit_lens(simulation, model=galaxy_model_path, settings=QUICK_FIT, seed=3)
    assert other["kwargs_result"] != first["kwargs_result"]


def test_warm_starts_share_the_pso_particles():
    assert particles_per_start(60) == 30 and particles_per_start(7, starts=3) == 2
    with pytest.raises(ValueError, match="pso_particles 3 cannot be shared among the fit's 2 warm starts"):
        particles_per_start(3)
    with pytest.raises(ValueError, match="among the fit's 0 warm starts"):
        particles_per_start(60, starts=0)
