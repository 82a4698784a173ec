"""The deblender: a frozen decoder, an encoder trained on blends, resumable training, clear errors."""

import keras
import numpy as np
import pytest

from lenstronomy_vae.networks.deblender import Deblender
from lenstronomy_vae.training.arrays import deblender_arrays
from lenstronomy_vae.training.deblender import train_deblender


def test_training_reduces_the_loss_and_keeps_the_decoder_frozen(lsst_vae, lsst_scenes, tmp_path):
    validation, train = lsst_scenes.split(8)
    before = [w.copy() for w in lsst_vae.decoder.get_weights()]
    deblender, state = train_deblender(lsst_vae, train, validation, epochs=4, checkpoint_dir=tmp_path,
                                       latent_weight=0.1, batch_size=8, learning_rate=3e-3, verbose=0)
    losses = [epoch["loss"] for epoch in state["history"]]
    assert len(losses) == 4 and losses[-1] < losses[0]
    for trained, original in zip(deblender.decoder.get_weights(), before):
        np.testing.assert_array_equal(trained, original)
    assert not deblender.decoder.trainable and "latent" in state["history"][0]


def test_saved_deblender_loads_safely_and_deblends_the_same(lsst_vae, lsst_scenes, tmp_path):
    deblender = Deblender.from_vae(lsst_vae, latent_weight=0.5, seed=1)
    deblender.save(tmp_path / "deblender.keras")
    loaded = keras.saving.load_model(tmp_path / "deblender.keras", safe_mode=True)
    assert isinstance(loaded, Deblender) and loaded.latent_weight == 0.5 and not loaded.decoder.trainable
    stamps = lsst_scenes.blend[:3]
    np.testing.assert_allclose(loaded.deblend(stamps), deblender.deblend(stamps), rtol=1e-5)
    assert loaded.encode(stamps).shape == (3, lsst_vae.config.latent_dim)


def test_training_arrays_score_the_isolated_target_and_carry_the_vae_latents(lsst_vae, lsst_scenes):
    blend, target, weight, latent = deblender_arrays(lsst_scenes, lsst_vae)
    np.testing.assert_allclose(blend, lsst_vae.normalization.normalize(lsst_scenes.blend.astype(float)), atol=1e-6)
    np.testing.assert_allclose(target, lsst_vae.normalization.normalize(lsst_scenes.target_intrinsic.astype(float)),
                               atol=1e-6)
    assert np.all(weight > 0) and latent.shape == (len(lsst_scenes), lsst_vae.config.latent_dim)


def test_bad_stamps_are_named(lsst_vae):
    deblender = Deblender.from_vae(lsst_vae)
    with pytest.raises(ValueError, match=r"shape \(n, 45, 45, 6\).*got \(2, 45, 45, 5\)"):
        deblender.encode(np.zeros((2, 45, 45, 5)))
    stamps = np.zeros((1, 45, 45, 6))
    stamps[0, 3, 4, 2] = np.nan
    with pytest.raises(ValueError, match=r"1 NaN or infinite pixel\(s\), first at .* \(0, 3, 4, 2\)"):
        deblender.encode(stamps)


@pytest.mark.slow
def test_a_fresh_process_loads_a_saved_deblender_by_path(lsst_vae, tmp_path):
    import subprocess
    import sys

    Deblender.from_vae(lsst_vae).save(tmp_path / "deblender.keras")
    code = ("from lenstronomy_vae.networks import load_network; "
            f"print(type(load_network({str(tmp_path / 'deblender.keras')!r})).__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().endswith("Deblender")


def test_deblend_names_a_channels_first_batch_and_takes_a_single_stamp(lsst_vae, lsst_scenes):
    deblender = Deblender.from_vae(lsst_vae)
    stamps = lsst_scenes.blend[:2].astype(np.float64)
    for method in (deblender.deblend, deblender.encode):
        with pytest.raises(ValueError, match=r"\(2, 6, 45, 45\), bands first.*np\.moveaxis\(stamps, 1, -1\)"):
            method(np.moveaxis(stamps, -1, 1))
    one = deblender.deblend(stamps[0])
    assert one.shape == (45, 45, 6)
    np.testing.assert_allclose(one, deblender.deblend(stamps[:1])[0], rtol=1e-6)
    assert deblender.encode(stamps[0]).shape == (lsst_vae.config.latent_dim,)


def test_a_deblender_refuses_turned_training_stamps(lsst_vae):
    with pytest.raises(ValueError, match="latent targets"):
        Deblender(lsst_vae.config, lsst_vae.normalization, augment=True)
