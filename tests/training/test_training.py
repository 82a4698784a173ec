"""Training on simulated stamps: weights, checkpoints, resumption, metrics."""

import dataclasses

import numpy as np
import pytest

from lenstronomy_vae.evaluation.metrics import relative_flux_error, ssim
from lenstronomy_vae.evaluation.reconstruction import reconstruction_metrics
from lenstronomy_vae.networks.normalization import ArcsinhTanhNormalization
from lenstronomy_vae.networks.vae import VAEConfig
from lenstronomy_vae.sims.galaxies import GalaxySimConfig, simulate_galaxies
from lenstronomy_vae.training.arrays import MODEL_ERROR, training_arrays
from lenstronomy_vae.training.loop import checkpoint_path, read_state
from lenstronomy_vae.training.vae import train_vae

CONFIG = VAEConfig(image_size=64, latent_dim=4, encoder_filters=(4, 8, 8, 8), decoder_filters=(8, 8, 4, 4),
                   dense_units=16)


@pytest.fixture(scope="module")
def galaxies():
    return simulate_galaxies(96, GalaxySimConfig(source="parametric"), seed=5)


def test_training_weights_are_noise_propagated_with_a_model_error_floor(galaxies):
    norm = ArcsinhTanhNormalization.fit(galaxies.intrinsic)
    observed, target, weight = training_arrays(galaxies, norm)
    assert observed.dtype == target.dtype == weight.dtype == np.float32
    assert weight.max() <= 1 / MODEL_ERROR**2 * (1 + 1e-6)
    faint = galaxies.intrinsic == 0
    slope = norm.beta / norm.band_max[0]
    expected_faint = 1 / ((slope * galaxies.noise_sigma[0, 0]) ** 2 + MODEL_ERROR**2)
    np.testing.assert_allclose(weight[faint], expected_faint, rtol=1e-5)


def test_training_data_with_nan_pixels_is_refused(galaxies):
    first = galaxies.split(4)[0]
    broken = dataclasses.replace(first, observed=first.observed.copy())  # split() returns views
    broken.observed[2, 5, 5, 0] = np.nan
    with pytest.raises(ValueError, match=r"observed stamps hold 1 NaN or infinite pixel\(s\), first in galaxy 2"):
        training_arrays(broken, ArcsinhTanhNormalization([1.0]))


def test_training_resumes_from_its_last_checkpoint(galaxies, tmp_path):
    validation, train = galaxies.split(32)
    _, state = train_vae(train, validation, CONFIG, epochs=1, checkpoint_dir=tmp_path, batch_size=32, verbose=0)
    assert state["epochs_done"] == 1 and checkpoint_path(tmp_path).is_file()
    vae, state = train_vae(train, validation, CONFIG, epochs=3, checkpoint_dir=tmp_path, batch_size=32, verbose=0)
    assert read_state(tmp_path)["epochs_done"] == 3 and len(state["history"]) == 3
    assert state["history"][-1]["loss"] < state["history"][0]["loss"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    metrics = reconstruction_metrics(vae, validation)
    assert metrics["ssim"].shape == metrics["flux_error"].shape == (32, 1)
    assert -1 <= metrics["median_ssim"] <= 1


def test_training_rejects_stamps_of_the_wrong_size(galaxies, tmp_path):
    with pytest.raises(ValueError, match=r"training stamps have shape \(64, 64, 1\); the model expects \(32, 32, 1\)"):
        train_vae(galaxies, galaxies, VAEConfig(image_size=32), epochs=1, checkpoint_dir=tmp_path)


def test_ssim_matches_hand_computed_values():
    rng = np.random.default_rng(0)
    image = rng.normal(size=(32, 32))
    assert ssim(image, image) == pytest.approx(1.0)
    # A constant image against itself plus an offset: only the luminance term differs.
    a, b = np.full((16, 16), 2.0), np.full((16, 16), 1.0)
    c1 = (0.01 * 1.0) ** 2
    assert ssim(a, b, data_range=1.0) == pytest.approx((2 * 2 * 1 + c1) / (4 + 1 + c1))
    assert ssim(5 + image, 5 - image) < -0.5  # same local means, anti-correlated structure


def test_relative_flux_error():
    reference = np.ones((2, 4, 4))
    assert relative_flux_error(1.1 * reference, reference) == pytest.approx([0.1, 0.1])
