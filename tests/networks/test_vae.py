"""The VAE model, its normalisation, training steps and saving."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from lenstronomy_vae.networks.normalization import ArcsinhTanhNormalization
from lenstronomy_vae.networks.numpy_decoder import NumpyDecoder
from lenstronomy_vae.networks.vae import GalaxyVAE, KLWarmup, VAEConfig


@pytest.fixture
def tiny_config():
    return VAEConfig(image_size=16, latent_dim=4, encoder_filters=(8, 16), decoder_filters=(16, 8), dense_units=32)


def test_normalization_round_trip_is_exact_to_float_precision():
    rng = np.random.default_rng(1)
    images = rng.gamma(0.5, 2.0, size=(5, 8, 8, 3)) * np.array([1.0, 10.0, 100.0])
    norm = ArcsinhTanhNormalization.fit(images)
    np.testing.assert_allclose(norm.band_max, images.max(axis=(1, 2)).mean(axis=0))
    normalized = norm.normalize(images)
    assert normalized.max() < 1.0 and normalized.min() >= 0.0
    np.testing.assert_allclose(norm.inverse(normalized), images, rtol=1e-9, atol=1e-12)


def test_normalization_matches_the_formula_and_works_on_tensors():
    norm = ArcsinhTanhNormalization(band_max=[2.0], beta=2.5)
    x = np.array([[[[0.0], [1.0], [4.0]]]])
    expected = np.tanh(np.arcsinh(2.5 * x / 2.0))
    np.testing.assert_allclose(norm.normalize(x), expected)
    np.testing.assert_allclose(np.asarray(norm(tf.constant(x, tf.float32))), expected, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(norm.inverse(tf.constant(expected, tf.float32))), x, rtol=1e-4, atol=1e-6)


def test_normalization_inverse_clips_saturated_values_instead_of_returning_inf():
    norm = ArcsinhTanhNormalization(band_max=[1.0])
    back = norm.inverse(np.array([1.0, 1.5, -1.0]))
    assert np.all(np.isfinite(back))
    assert back[0] == back[1] > 0 > back[2]


def test_normalization_inverse_variance_is_the_propagated_noise():
    norm = ArcsinhTanhNormalization(band_max=[3.0])
    x, sigma, h = np.array([0.0, 0.5, 5.0]), 0.1, 1e-6
    slope = (norm.normalize(x + h) - norm.normalize(x - h)) / (2 * h)
    np.testing.assert_allclose(norm.inverse_variance(x, sigma), 1 / (slope * sigma) ** 2, rtol=1e-5)


@pytest.mark.parametrize("band_max", [[0.0], [-1.0], [np.nan]])
def test_normalization_rejects_bad_constants(band_max):
    with pytest.raises(ValueError, match="band_max"):
        ArcsinhTanhNormalization(band_max=band_max)


def test_config_rejects_image_size_below_the_decoder_start():
    with pytest.raises(ValueError, match="smaller than 2\\*\\*len\\(decoder_filters\\) = 8"):
        VAEConfig(image_size=7, decoder_filters=(8, 8, 8))


def test_odd_image_size_is_padded_inside_and_cropped_back():
    config = VAEConfig(image_size=45, bands=("g", "r"), latent_dim=3, encoder_filters=(4, 8), decoder_filters=(8, 4, 4),
                       dense_units=8)
    assert config.padded_size == 48 and config.padding == ((1, 2), (1, 2))
    vae = GalaxyVAE(config, ArcsinhTanhNormalization([1.0, 2.0]), seed=0)
    stamps = np.random.default_rng(0).normal(size=(2, 45, 45, 2)).astype(np.float32)
    assert vae(stamps).shape == (2, 45, 45, 2)
    fast = NumpyDecoder.from_keras(vae.decoder)
    z = np.random.default_rng(1).normal(size=(2, 3)).astype(np.float32)
    np.testing.assert_allclose(fast(z), vae.decoder(z), atol=1e-6)
    output, jacobian = fast.jacobian(z[0])
    assert output.shape == (45, 45, 2) and jacobian.shape == (3, 45, 45, 2)
    weights = np.random.default_rng(2).normal(size=(45, 45, 2)).astype(np.float32)
    latent = tf.Variable(z[:1])
    with tf.GradientTape() as tape:
        projected = tf.reduce_sum(vae.decoder(latent) * weights)
    np.testing.assert_allclose(np.sum(jacobian * weights, axis=(1, 2, 3)), tape.gradient(projected, latent)[0],
                               rtol=1e-4, atol=1e-6)


def test_model_rejects_normalization_with_wrong_band_count():
    config = VAEConfig(image_size=16, bands=("g", "r"), latent_dim=2, encoder_filters=(4,), decoder_filters=(4,))
    with pytest.raises(ValueError, match="1 band constants but the model has 2 bands"):
        GalaxyVAE(config, ArcsinhTanhNormalization([1.0]))


def _blob_data(n=64, size=16, seed=0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size] - (size - 1) / 2
    widths = rng.uniform(1.5, 3.0, n)
    clean = np.exp(-(x**2 + y**2)[None] / (2 * widths[:, None, None] ** 2))[..., None]
    noisy = clean + rng.normal(0, 0.05, clean.shape)
    return noisy, clean


@pytest.mark.parametrize("augment", [False, True])
def test_training_reduces_the_loss_and_kl_warmup_sets_the_weight(tiny_config, augment):
    noisy, clean = _blob_data()
    norm = ArcsinhTanhNormalization.fit(clean)
    vae = GalaxyVAE(tiny_config, norm, kl_weight=0.0, seed=3, augment=augment)
    vae.compile(optimizer=keras.optimizers.Adam(3e-3))
    arrays = tuple(a.astype("float32") for a in (norm.normalize(noisy), norm.normalize(clean), np.ones_like(clean)))
    dataset = tf.data.Dataset.from_tensor_slices(arrays).batch(16)
    history = vae.fit(dataset, epochs=8, verbose=0, callbacks=[KLWarmup(0.0, 1.0, epochs=4)])
    assert history.history["chi2"][-1] < 0.5 * history.history["chi2"][0]
    assert float(vae.kl_weight.numpy()) == 1.0


def test_augmentation_turns_observed_target_and_weight_alike(tiny_config):
    vae = GalaxyVAE(tiny_config, ArcsinhTanhNormalization([1.0] * tiny_config.num_bands), seed=1, augment=True)
    size, bands = tiny_config.image_size, tiny_config.num_bands
    stamp = np.arange(size * size * bands, dtype=np.float32).reshape(size, size, bands)  # no symmetry
    observed = np.repeat(stamp[None], 16, axis=0)
    turned = [np.asarray(a) for a in vae._oriented(tf.constant(observed), tf.constant(2 * observed),
                                                    tf.constant(3 * observed))]
    np.testing.assert_array_equal(turned[1], 2 * turned[0])
    np.testing.assert_array_equal(turned[2], 3 * turned[0])
    orientations = [np.rot90(stamp, k) for k in range(4)]
    orientations += [o[:, ::-1] for o in orientations]
    drawn = [next(i for i, o in enumerate(orientations) if np.array_equal(o, image)) for image in turned[0]]
    assert len(set(drawn)) >= 4  # 16 draws of 8 orientations


def test_save_and_load_round_trip_in_safe_mode(tiny_config, tmp_path):
    vae = GalaxyVAE(tiny_config, ArcsinhTanhNormalization([2.0, 3.0][: tiny_config.num_bands]), seed=0, augment=True)
    path = tmp_path / "model.keras"
    vae.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True, compile=False)
    z = np.random.default_rng(0).normal(size=(3, tiny_config.latent_dim)).astype("float32")
    np.testing.assert_array_equal(np.asarray(loaded.decoder(z)), np.asarray(vae.decoder(z)))
    np.testing.assert_array_equal(loaded.normalization.band_max, vae.normalization.band_max)
    assert loaded.config == tiny_config and loaded.augment


def test_inverse_caps_at_the_peak_limit_and_leaves_fainter_values_exact():
    normalization = ArcsinhTanhNormalization([10.0, 100.0])
    images = np.array([[3.0, 40.0], [400.0, 2000.0]])
    np.testing.assert_allclose(normalization.inverse(normalization.normalize(images), peak_limit=50.0),
                               [[3.0, 40.0], [400.0, 2000.0]], rtol=1e-6)
    capped = normalization.inverse(np.array([[1.05, 0.999999]]), peak_limit=50.0)
    np.testing.assert_allclose(capped, [[500.0, 5000.0]], rtol=1e-5)  # 50 band_max, not ~280
    assert normalization.inverse(np.array([[0.999999]]))[0, 0] > 2000
