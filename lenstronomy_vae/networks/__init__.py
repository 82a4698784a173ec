"""The Keras networks and their files: the β-VAE, its normalisation, the deblender and the regressor.

Also the float32 numpy decoder and its Jacobian (for likelihood loops), the one decoding path to
image units, and the shipped model files (manifest, SHA-256 checks, safe loading). Importing this
subpackage registers every serialisable class with Keras.
"""

from lenstronomy_vae.networks.deblender import Deblender
from lenstronomy_vae.networks.decoding import PEAK_LIMIT, decode, encode, reconstruct
from lenstronomy_vae.networks.galaxy_model import GalaxyModel, load_galaxy_model
from lenstronomy_vae.networks.model_files import (
    ModelFileError,
    load_network,
    load_vae,
    read_manifest,
    shipped_models,
    user_models_dir,
    weights_dir,
)
from lenstronomy_vae.networks.normalization import ArcsinhTanhNormalization
from lenstronomy_vae.networks.numpy_decoder import NumpyDecoder
from lenstronomy_vae.networks.regressor import LatentRegressor
from lenstronomy_vae.networks.vae import GalaxyVAE, VAEConfig

__all__ = ["ArcsinhTanhNormalization", "Deblender", "GalaxyModel", "GalaxyVAE", "LatentRegressor", "ModelFileError",
           "NumpyDecoder", "PEAK_LIMIT", "VAEConfig", "decode", "encode", "load_galaxy_model", "load_network",
           "load_vae", "read_manifest", "reconstruct", "shipped_models", "user_models_dir", "weights_dir"]
