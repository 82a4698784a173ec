"""Training the networks on simulated sets, with checkpoints and resumption, and writing them as models.

Models go to the user's model directory (``$LENSTRONOMY_VAE_HOME/models``, default
``~/.lenstronomy_vae/models``) unless another is given, as new files with a manifest entry; the
shipped weights are never written over.
"""

from lenstronomy_vae.training.deblender import train_and_ship_deblender, train_deblender
from lenstronomy_vae.training.loop import fit_resumable
from lenstronomy_vae.training.regressor import (
    calibrate_and_ship,
    calibrate_shear_response,
    train_and_ship_regressor,
    train_regressor,
)
from lenstronomy_vae.training.vae import train_and_ship, train_vae

__all__ = ["calibrate_and_ship", "calibrate_shear_response", "fit_resumable", "train_and_ship",
           "train_and_ship_deblender", "train_and_ship_regressor", "train_deblender", "train_regressor", "train_vae"]
