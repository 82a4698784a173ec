"""NumpyDecoder: agreement with the Keras decoder, shapes, refusals, GalaxyModel's two paths, and
the forward-mode Jacobian against TensorFlow's and finite differences."""

import inspect
import pathlib
import pickle
import subprocess
import sys
import threading

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import TINY_CONFIG

from lenstronomy_vae.networks import galaxy_model, jacobian, numpy_decoder
from lenstronomy_vae.networks.galaxy_model import load_galaxy_model
from lenstronomy_vae.networks.model_files import load_vae
from lenstronomy_vae.networks.numpy_decoder import KERAS_LEAKY_RELU_SLOPE, NumpyDecoder
from lenstronomy_vae.networks.vae import VAEConfig, build_decoder


def random_decoder(config, seed=0):
    """The decoder of ``config`` with Keras' seeded initial kernels and random non-zero biases."""
    keras.utils.set_random_seed(seed)
    decoder = build_decoder(config)
    rng = np.random.default_rng(seed)
    for layer in decoder.layers:
        if getattr(layer, "bias", None) is not None:
            layer.bias.assign(rng.normal(0.0, 0.1, layer.bias.shape).astype(np.float32))
    return decoder


def assert_matches_keras(model, fast, z):
    expected = np.asarray(model(z, training=False))
    actual = fast(z)
    assert actual.shape == expected.shape and actual.dtype == np.float32
    scale = np.abs(expected).max()
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5 * scale)


@pytest.mark.parametrize("config", [
    VAEConfig(**TINY_CONFIG),
    VAEConfig(bands=("g", "r", "i"), **TINY_CONFIG),
    VAEConfig(**{**TINY_CONFIG, "decoder_filters": (16, 4)}),  # 16 → 4 channels: scatter form
    VAEConfig(),
], ids=["tiny", "tiny-3-bands", "tiny-few-channels", "default"])
def test_agrees_with_keras(config):
    decoder = random_decoder(config)
    fast = NumpyDecoder.from_keras(decoder)
    assert fast.output_shape == (config.image_size, config.image_size, config.num_bands)
    assert_matches_keras(decoder, fast, np.random.default_rng(1).normal(size=(3, config.latent_dim)).astype(np.float32))


@pytest.mark.parametrize("kernel_size", [1, 2, (5, 3)])
def test_conv2d_kernel_sizes_and_sequential_models(kernel_size):
    keras.utils.set_random_seed(2)
    decoder = keras.Sequential([
        keras.Input((3,)),
        keras.layers.Dense(5 * 6 * 4, activation="leaky_relu"),
        keras.layers.Reshape((5, 6, 4)),
        keras.layers.Conv2DTranspose(6, 3, strides=2, padding="same", activation="leaky_relu", use_bias=False),
        keras.layers.Conv2D(3, kernel_size, padding="same", activation="leaky_relu"),
        keras.layers.Conv2D(2, 3, padding="same"),
    ])
    assert_matches_keras(decoder, NumpyDecoder.from_keras(decoder), np.random.default_rng(3).normal(size=(2, 3)))


def test_batch_shapes_chunks_and_bad_input(monkeypatch):
    decoder = random_decoder(VAEConfig(**TINY_CONFIG))
    fast = NumpyDecoder.from_keras(decoder)
    z = np.random.default_rng(4).normal(size=(7, 4)).astype(np.float32)
    one_by_one = np.concatenate([fast(row[None]) for row in z])
    monkeypatch.setattr(numpy_decoder, "CHUNK", 3)  # chunks of 3, 3 and 1
    np.testing.assert_allclose(fast(z), one_by_one, rtol=1e-6, atol=1e-6)
    assert fast(z[:0]).shape == (0, 16, 16, 1)
    with pytest.raises(ValueError, match=r"expected latents of shape \(n, 4\); got \(4,\)"):
        fast(z[0])


def test_threads_and_pickled_copies_give_the_same_images():
    fast = NumpyDecoder.from_keras(random_decoder(VAEConfig(**TINY_CONFIG)))
    z = np.random.default_rng(5).normal(size=(40, 4)).astype(np.float32)
    expected = fast(z)
    results = [None] * 4

    def decode(index):
        results[index] = np.concatenate([fast(row[None]) for row in z])

    threads = [threading.Thread(target=decode, args=(index,)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for result in results:
        np.testing.assert_array_equal(result, expected)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(fast))(z), expected)


@pytest.mark.slow
def test_runs_without_tensorflow(tmp_path):
    fast = NumpyDecoder.from_keras(random_decoder(VAEConfig(**TINY_CONFIG)))
    z = np.random.default_rng(6).normal(size=(2, 4)).astype(np.float32)
    np.save(tmp_path / "z.npy", z)
    np.save(tmp_path / "expected.npy", fast(z))
    (tmp_path / "decoder.pkl").write_bytes(pickle.dumps(fast))
    # Bare package objects skip the package's __init__ files (they import TensorFlow and lenstronomy).
    script = (
        "import pickle, sys, types; import numpy as np\n"
        "sys.modules['tensorflow'] = sys.modules['keras'] = None  # any import of them fails\n"
        "package = sys.modules['lenstronomy_vae'] = types.ModuleType('lenstronomy_vae')\n"
        f"package.__path__ = [{str(pathlib.Path(numpy_decoder.__file__).parents[1])!r}]\n"
        "networks = sys.modules['lenstronomy_vae.networks'] = types.ModuleType('lenstronomy_vae.networks')\n"
        f"networks.__path__ = [{str(pathlib.Path(numpy_decoder.__file__).parent)!r}]\n"
        f"directory = {str(tmp_path)!r}\n"
        "fast = pickle.load(open(directory + '/decoder.pkl', 'rb'))\n"
        "out = fast(np.load(directory + '/z.npy'))\n"
        "assert np.array_equal(out, np.load(directory + '/expected.npy'))\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)


def test_leaky_relu_slope_is_keras_default():
    default = inspect.signature(keras.activations.leaky_relu).parameters["negative_slope"].default
    assert KERAS_LEAKY_RELU_SLOPE == default


@pytest.mark.parametrize("layer, message", [
    (keras.layers.BatchNormalization(), "BatchNormalization is not supported"),
    (keras.layers.Conv2DTranspose(2, 3, strides=1, padding="same"), r"strides=\(1, 1\) \(only \(2, 2\)\)"),
    (keras.layers.Conv2DTranspose(2, 5, strides=2, padding="same"), r"kernel_size=\(5, 5\)"),
    (keras.layers.Conv2D(2, 3, padding="valid"), "padding='valid'"),
    (keras.layers.Conv2D(2, 3, padding="same", dilation_rate=2), "dilation_rate"),
    (keras.layers.Conv2D(2, 3, padding="same", activation="relu"), "activation 'relu'"),
])
def test_unsupported_layers_are_named(layer, message):
    inputs = keras.Input((4,))
    x = keras.layers.Reshape((4, 4, 1))(keras.layers.Dense(16)(inputs))
    decoder = keras.Model(inputs, keras.layers.Conv2D(1, 3, padding="same")(layer(x)))
    with pytest.raises(NotImplementedError, match=message):
        NumpyDecoder.from_keras(decoder)


def test_branching_model_is_refused():
    inputs = keras.Input((4,))
    x = keras.layers.Reshape((2, 2, 1))(inputs)
    outputs = keras.layers.Add()([keras.layers.Conv2D(1, 3, padding="same")(x), x])
    with pytest.raises(NotImplementedError, match="'add' does not take the previous layer's output"):
        NumpyDecoder.from_keras(keras.Model(inputs, outputs))


def test_galaxy_model_decodes_the_same_stamps_by_numpy_and_tensorflow(multiband_model_path, monkeypatch):
    model = load_galaxy_model(multiband_model_path)
    assert model._decode_numpy is not None
    z = np.random.default_rng(7).normal(size=(3, model.latent_dim))
    by_numpy = model.decode(z)
    monkeypatch.setattr(galaxy_model, "GRAPH_MIN_BATCH", 1)
    by_tensorflow = model.decode(z)
    assert by_numpy.shape == (3, 16, 16, 3) and by_numpy.dtype == np.float64
    np.testing.assert_allclose(by_numpy, by_tensorflow, rtol=1e-5, atol=1e-6 * by_tensorflow.max())


def test_galaxy_model_without_numpy_decoder_warns_and_uses_tensorflow(galaxy_model_path, monkeypatch):
    expected = load_galaxy_model(galaxy_model_path).decode(np.zeros(4))

    def refuse(decoder):
        raise NotImplementedError("layer 'x' of type Custom is not supported by NumpyDecoder")

    monkeypatch.setattr(NumpyDecoder, "from_keras", refuse)
    with pytest.warns(UserWarning, match="Custom is not supported by NumpyDecoder; decoding with TensorFlow"):
        model = galaxy_model.GalaxyModel(load_vae(galaxy_model_path), name="custom")
    np.testing.assert_allclose(model.decode(np.zeros(4)), expected, rtol=1e-5, atol=1e-6 * expected.max())


# --- Jacobian (forward mode) -------------------------------------------------------------------


def tensorflow_jacobian(decoder, z):
    """TensorFlow forward mode, as lenstronomy_vae.jacobian's fallback: (output, (d, H, W, C))."""
    output, tangents = jacobian._jvp_graph(decoder, len(z))(tf.constant(z, dtype=tf.float32))
    return output.numpy(), tangents.numpy()


def assert_jacobian_matches_tensorflow(decoder, fast, z):
    output, derivatives = fast.jacobian(z)
    expected_output, expected = tensorflow_jacobian(decoder, z)
    assert output.dtype == derivatives.dtype == np.float32
    assert output.shape == fast.output_shape and derivatives.shape == (len(z), *fast.output_shape)
    np.testing.assert_allclose(output, fast(z[None])[0], rtol=1e-6, atol=1e-6 * np.abs(output).max())
    np.testing.assert_allclose(output, expected_output, rtol=1e-5, atol=1e-5 * np.abs(expected_output).max())
    np.testing.assert_allclose(derivatives, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


@pytest.mark.parametrize("config", [
    VAEConfig(**TINY_CONFIG),
    VAEConfig(bands=("g", "r", "i"), **TINY_CONFIG),
    VAEConfig(**{**TINY_CONFIG, "decoder_filters": (16, 4)}),  # scatter form with a leaky ReLU
    VAEConfig(),
    VAEConfig(bands=("g", "r", "i")),
], ids=["tiny", "tiny-3-bands", "tiny-few-channels", "default", "default-3-bands"])
def test_jacobian_agrees_with_tensorflow_forward_mode(config):
    decoder = random_decoder(config)
    z = np.random.default_rng(8).normal(size=config.latent_dim).astype(np.float32)
    assert_jacobian_matches_tensorflow(decoder, NumpyDecoder.from_keras(decoder), z)


@pytest.mark.parametrize("config", [VAEConfig(**TINY_CONFIG), VAEConfig()], ids=["tiny", "default"])
def test_jacobian_agrees_with_float64_finite_differences(config):
    """Central differences of a float64 copy of the decoder: the network is piecewise linear, so
    a step far below the distance to any leaky-ReLU kink gives its derivative to rounding."""
    decoder = random_decoder(config)
    floatx, policy = keras.config.floatx(), keras.config.dtype_policy()
    keras.config.set_floatx("float64")
    keras.config.set_dtype_policy("float64")
    try:
        reference = build_decoder(config)
    finally:
        keras.config.set_floatx(floatx)
        keras.config.set_dtype_policy(policy)
    reference.set_weights(decoder.get_weights())
    z = np.random.default_rng(9).normal(size=config.latent_dim).astype(np.float32)
    step, d = 1e-6, config.latent_dim
    shifted = np.asarray(reference(z.astype(np.float64) + np.concatenate([step * np.eye(d), -step * np.eye(d)])))
    assert shifted.dtype == np.float64
    finite = (shifted[:d] - shifted[d:]) / (2 * step)
    _, derivatives = NumpyDecoder.from_keras(decoder).jacobian(z)
    np.testing.assert_allclose(derivatives, finite, rtol=1e-5, atol=1e-5 * np.abs(finite).max())


def test_jacobian_of_other_chains_chunks_and_product_blocks(monkeypatch):
    """Two Dense layers (the second linear), no bias, Conv2D with a leaky ReLU; a chain starting
    with a Reshape (identity tangents, no Dense row trick); chunks of 3 + 1 tangents; every
    matrix product split into column blocks."""
    keras.utils.set_random_seed(10)
    dense_chain = keras.Sequential([
        keras.Input((4,)),
        keras.layers.Dense(10, activation="leaky_relu"),
        keras.layers.Dense(5 * 6 * 4),
        keras.layers.Reshape((5, 6, 4)),
        keras.layers.Conv2DTranspose(6, 3, strides=2, padding="same", activation="leaky_relu", use_bias=False),
        keras.layers.Conv2D(3, (5, 3), padding="same", activation="leaky_relu"),
        keras.layers.Conv2D(2, 3, padding="same"),
    ])
    reshape_chain = keras.Sequential([
        keras.Input((12,)),
        keras.layers.Reshape((2, 2, 3)),
        keras.layers.Conv2DTranspose(8, 3, strides=2, padding="same", activation="leaky_relu"),
        keras.layers.Conv2D(1, 3, padding="same"),
    ])
    rng = np.random.default_rng(11)
    for decoder in (dense_chain, reshape_chain):
        d = decoder.inputs[0].shape[-1]
        z = rng.normal(size=d).astype(np.float32)
        assert_jacobian_matches_tensorflow(decoder, NumpyDecoder.from_keras(decoder), z)
        unsplit = NumpyDecoder.from_keras(decoder).jacobian(z)
        monkeypatch.setattr(numpy_decoder, "JACOBIAN_CHUNK", 3)
        monkeypatch.setattr(numpy_decoder, "MAX_PRODUCT", 50)
        for expected, actual in zip(unsplit, NumpyDecoder.from_keras(decoder).jacobian(z)):
            np.testing.assert_allclose(actual, expected, rtol=1e-6, atol=1e-6 * np.abs(expected).max())
        monkeypatch.undo()


def test_jacobian_threads_pickles_and_bad_input():
    fast = NumpyDecoder.from_keras(random_decoder(VAEConfig(**TINY_CONFIG)))
    z = np.random.default_rng(12).normal(size=(8, 4)).astype(np.float32)
    expected = [fast.jacobian(row) for row in z]
    results = [None] * 3

    def differentiate(index):
        results[index] = [fast.jacobian(row) for row in z]

    threads = [threading.Thread(target=differentiate, args=(index,)) for index in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    copy = pickle.loads(pickle.dumps(fast))
    for result in [*results, [copy.jacobian(row) for row in z]]:
        for (output, derivatives), (expected_output, expected_derivatives) in zip(result, expected):
            np.testing.assert_array_equal(output, expected_output)
            np.testing.assert_array_equal(derivatives, expected_derivatives)
    with pytest.raises(ValueError, match=r"expected one latent vector of shape \(4,\); got \(1, 4\)"):
        fast.jacobian(z[:1])


@pytest.mark.parametrize("band_index", [0, 2])
def test_unit_flux_stamp_jacobian_by_numpy_and_tensorflow(multiband_model_path, monkeypatch, band_index):
    model = load_galaxy_model(multiband_model_path)
    assert model._decode_numpy is not None
    z = np.array([0.3, -0.5, 0.1, 0.8])
    stamp, derivatives = jacobian.unit_flux_stamp_jacobian(model, z, band_index)
    monkeypatch.setattr(NumpyDecoder, "jacobian", None)  # any use of the numpy path now fails
    with pytest.raises(TypeError):
        jacobian.unit_flux_stamp_jacobian(model, z, band_index)
    monkeypatch.setattr(model, "_decode_numpy", None)
    expected_stamp, expected = jacobian.unit_flux_stamp_jacobian(model, z, band_index)
    assert stamp.shape == (16, 16) and derivatives.shape == (16, 16, 4)
    assert stamp.dtype == derivatives.dtype == np.float64
    assert derivatives[..., 1].flags.c_contiguous
    assert np.isclose(stamp.sum(), 1.0) and np.allclose(derivatives.sum(axis=(0, 1)), 0.0, atol=1e-12)
    np.testing.assert_allclose(stamp, expected_stamp, rtol=1e-5, atol=1e-6 * expected_stamp.max())
    np.testing.assert_allclose(derivatives, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


def test_unit_flux_stamp_jacobian_of_a_band_with_its_own_band_max(multiband_model_path):
    """Each band's flux scale is its own band_max: the chain rule must not take band 0's."""
    model = galaxy_model.GalaxyModel(load_vae(multiband_model_path), name="scaled")
    model.vae.normalization.band_max = np.array([1.0, 4.0, 20.0])[:len(model.bands)]
    z, step, band = np.array([0.3, -0.5, 0.1, 0.8]), 1e-3, len(model.bands) - 1

    def stamp(latents):
        flux = np.maximum(model.decode(latents)[0, ..., band], 0.0)
        return flux / flux.sum()

    value, derivatives = jacobian.unit_flux_stamp_jacobian(model, z, band)
    np.testing.assert_allclose(value, stamp(z), rtol=1e-5, atol=1e-7)
    for i in range(len(z)):
        shift = np.eye(len(z))[i] * step
        numerical = (stamp(z + shift) - stamp(z - shift)) / (2 * step)
        np.testing.assert_allclose(derivatives[..., i], numerical, atol=2e-3 * np.abs(numerical).max())
