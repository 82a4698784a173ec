"""Shared fixtures: tiny VAE galaxy models saved to a temporary directory (fast to build and run)."""

import keras
import numpy as np
import pytest

from lenstronomy_vae.networks.model_files import HOME_VARIABLE
from lenstronomy_vae.networks.normalization import ArcsinhTanhNormalization
from lenstronomy_vae.networks.vae import GalaxyVAE, VAEConfig


@pytest.fixture(autouse=True)
def user_home(tmp_path, monkeypatch):
    """An empty LENSTRONOMY_VAE_HOME for every test: none reads or writes a real user model directory."""
    monkeypatch.setenv(HOME_VARIABLE, str(tmp_path / "home"))
    return tmp_path / "home"


TINY_CONFIG = dict(
    image_size=16, latent_dim=4, encoder_filters=(4, 8), decoder_filters=(8, 4), dense_units=16,
    pixel_scale=0.05,
)


def tiny_vae(bands=("F814W",)):
    """A randomly initialised 16×16-pixel, 4-latent VAE."""
    config = VAEConfig(bands=bands, **TINY_CONFIG)
    return GalaxyVAE(config, ArcsinhTanhNormalization(band_max=[1.0] * len(bands)), seed=0)


def tiny_lsst_vae(scenes):
    """A galaxy-like 45×45-pixel, 6-band, 4-latent VAE normalised on the scenes' targets."""
    config = VAEConfig(bands=scenes.bands, **{**TINY_CONFIG, "image_size": 45, "pixel_scale": scenes.pixel_scale})
    return make_galaxy_like(GalaxyVAE(config, ArcsinhTanhNormalization.fit(scenes.target_intrinsic), seed=0))


def make_galaxy_like(vae):
    """Set decoder weights so that it decodes a smooth, centred blob whose shape depends on z.

    A random decoder gives pixel noise; bilinear up-sampling kernels acting on a centred 2×2
    patch of the coarsest grid give a galaxy-like, smooth and positive profile instead.
    """
    rng = np.random.default_rng(1)
    layers = vae.decoder.layers
    dense = next(layer for layer in layers if isinstance(layer, keras.layers.Dense))
    transposed = [layer for layer in layers if isinstance(layer, keras.layers.Conv2DTranspose)]
    final = [layer for layer in layers if type(layer) is keras.layers.Conv2D][-1]
    start = vae.config.padded_size // 2 ** len(vae.config.decoder_filters)
    channels = vae.config.decoder_filters[0]
    bias = np.zeros((start, start, channels))
    bias[start // 2 - 1: start // 2 + 1, start // 2 - 1: start // 2 + 1, 0] = 1.0
    kernel = np.zeros((vae.config.latent_dim, start, start, channels))
    kernel[..., 0] = 0.15 * rng.normal(size=(vae.config.latent_dim, start, start))
    dense.set_weights([kernel.reshape(vae.config.latent_dim, -1), bias.ravel()])
    smooth = np.outer([0.5, 1.0, 0.5], [0.5, 1.0, 0.5])
    for layer in transposed:  # kernel (kh, kw, out, in)
        weights = np.zeros(layer.kernel.shape)
        weights[:, :, 0, 0] = smooth
        layer.set_weights([weights, np.zeros(layer.bias.shape)])
    weights = np.zeros(final.kernel.shape)  # Conv2D kernel (kh, kw, in, out)
    for band in range(weights.shape[-1]):
        weights[:, :, 0, band] = 0.05 * smooth * (1.0 + 0.5 * band)
    final.set_weights([weights, np.full(final.bias.shape, -0.01)])
    return vae


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory):
    """Path of a randomly initialised single-band tiny model (.keras)."""
    path = tmp_path_factory.mktemp("models") / "tiny.keras"
    tiny_vae().save(path)
    return str(path)


@pytest.fixture(scope="session")
def galaxy_model_path(tmp_path_factory):
    """Path of a single-band tiny model decoding smooth, centred galaxy-like blobs (.keras)."""
    path = tmp_path_factory.mktemp("models") / "galaxy.keras"
    make_galaxy_like(tiny_vae()).save(path)
    return str(path)


@pytest.fixture(scope="session")
def multiband_model_path(tmp_path_factory):
    """Path of a galaxy-like tiny model with bands ('g', 'r', 'i') (.keras)."""
    path = tmp_path_factory.mktemp("models") / "multiband.keras"
    make_galaxy_like(tiny_vae(bands=("g", "r", "i"))).save(path)
    return str(path)


@pytest.fixture
def latents():
    """A latent vector of the tiny models as profile keyword arguments."""
    return {"z_0": 0.3, "z_1": -0.5, "z_2": 0.1, "z_3": 0.8}


@pytest.fixture(scope="session")
def lsst_scenes():
    """24 LSST-like blended scenes of 1–4 galaxies (45×45 px, ugrizy)."""
    from lenstronomy_vae.sims.blends import BlendSimConfig, simulate_blends

    return simulate_blends(24, BlendSimConfig(), seed=5)


@pytest.fixture(scope="session")
def lsst_vae(lsst_scenes):
    """A tiny galaxy-like VAE for the LSST-like scenes (45×45 px, padded to 48 inside)."""
    return tiny_lsst_vae(lsst_scenes)
