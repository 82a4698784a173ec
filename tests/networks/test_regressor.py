"""The latent regressor: label-correct augmentation, training, predictions."""

import galsim
import numpy as np
import pytest
import tensorflow as tf

from lenstronomy_vae.networks.regressor import LatentRegressor, augment
from lenstronomy_vae.sims.shapes import adaptive_moments_shape
from lenstronomy_vae.training.regressor import train_regressor


def test_augmentation_transforms_labels_as_the_image_shape_changes():
    galaxy = galsim.Gaussian(sigma=1.0).shear(g1=0.3, g2=0.1).drawImage(nx=33, ny=33, scale=0.2, method="no_pixel")
    images = np.repeat(galaxy.array[None, :, :, None], 8, axis=0).astype(np.float32)
    labels = np.tile([[0.3, 0.1, 1.2]], (8, 1)).astype(np.float32)
    turns = tf.constant([0, 1, 2, 3, 0, 1, 2, 3], tf.int32)
    mirror = tf.constant([False] * 4 + [True] * 4)
    augmented, new_labels = augment(tf.constant(images), tf.constant(labels), turns, mirror)
    measured = np.array(adaptive_moments_shape(galaxy.array, 0.2))  # ≈ (0.3, 0.1): pixelisation
    for image, label in zip(augmented.numpy(), new_labels.numpy()):
        np.testing.assert_allclose(adaptive_moments_shape(image[:, :, 0], 0.2), measured * label[:2] / [0.3, 0.1],
                                   atol=1e-5)
        assert label[2] == pytest.approx(1.2)
    np.testing.assert_allclose(new_labels[:, :2], [[0.3, 0.1], [-0.3, -0.1], [0.3, 0.1], [-0.3, -0.1],
                                                   [0.3, -0.1], [-0.3, 0.1], [0.3, -0.1], [-0.3, 0.1]], atol=1e-7)


def test_regressor_trains_reduces_its_loss_and_predicts_named_quantities(lsst_vae, lsst_scenes, tmp_path):
    validation, train = lsst_scenes.split(8)
    regressor, state = train_regressor(lsst_vae, train, validation, epochs=5, checkpoint_dir=tmp_path, batch_size=8,
                                       learning_rate=1e-2, verbose=0)
    losses = [epoch["loss"] for epoch in state["history"]]
    assert losses[-1] < losses[0]
    np.testing.assert_array_equal(regressor.encoder.get_weights()[0], lsst_vae.encoder.get_weights()[0])
    predicted = regressor.predict_quantities(lsst_scenes.blend[:4])
    assert set(predicted) == {"g1", "g2", "redshift"} and predicted["g1"].shape == (4,)


def test_regressor_outputs_must_include_the_shape(lsst_vae):
    with pytest.raises(ValueError, match="must contain g1 and g2"):
        LatentRegressor(lsst_vae.config, lsst_vae.normalization, outputs=("redshift",))


def test_shear_response_divides_the_shapes_and_survives_saving(lsst_vae, lsst_scenes, tmp_path):
    import keras

    regressor = LatentRegressor.from_encoder_model(lsst_vae, seed=0)
    calibrated = regressor.with_shear_response((0.5, 0.25))
    raw, divided = regressor.predict_quantities(lsst_scenes.blend[:3]), calibrated.predict_quantities(
        lsst_scenes.blend[:3])
    np.testing.assert_allclose(divided["g1"], raw["g1"] / 0.5, rtol=1e-6)
    np.testing.assert_allclose(divided["g2"], raw["g2"] / 0.25, rtol=1e-6)
    np.testing.assert_allclose(divided["redshift"], raw["redshift"], rtol=1e-6)
    calibrated.save(tmp_path / "calibrated.keras")
    assert keras.saving.load_model(tmp_path / "calibrated.keras", safe_mode=True).shear_response == (0.5, 0.25)
    with pytest.raises(ValueError, match="shear_response must be two positive numbers"):
        regressor.with_shear_response((0.5, -1.0))


def test_calibration_sets_the_response_to_one_plus_the_measured_bias(lsst_vae, monkeypatch):
    from lenstronomy_vae.training import regressor as training_regressor
    from lenstronomy_vae.training.regressor import calibrate_shear_response

    measured = {"m": [-0.4, -0.3], "m_err": [0.02, 0.02], "c": [0.0, 0.0], "c_err": [0.01, 0.01], "n": 10}
    monkeypatch.setattr(training_regressor, "regressor_shear_bias", lambda *args: measured)
    regressor = LatentRegressor.from_encoder_model(lsst_vae).with_shear_response((2.0, 2.0))
    calibrated, bias = calibrate_shear_response(regressor, None, None, None, None)
    assert calibrated.shear_response == pytest.approx((0.6, 0.7)) and bias is measured
    monkeypatch.setattr(training_regressor, "regressor_shear_bias", lambda *args: {**measured, "m": [-1.2, 0.0]})
    with pytest.raises(ValueError, match="is not usable"):
        calibrate_shear_response(regressor, None, None, None, None)
