"""The latent regressor: label-correct augmentation, training, predictions."""

import galsim
import numpy as np
import pytest
import tensorflow as tf

from lenstronomy_vae.metrics import adaptive_moments_shape
from lenstronomy_vae.regressor import LatentRegressor, augment, train_regressor


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
