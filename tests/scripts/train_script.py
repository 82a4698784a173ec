"""A tiny VAE training run in its own process, for tests/test_interruption.py to kill and resume.

Usage::

    python tests/train_script.py GALAXIES_H5 CHECKPOINT_DIR EPOCHS

The galaxies file is a saved :class:`lenstronomy_vae.sims.galaxies.GalaxySet`; its first
``VALIDATION`` galaxies validate, the rest train. The test imports :func:`train` to run the
very same training in its own process.
"""

import sys

from lenstronomy_vae.networks.vae import VAEConfig
from lenstronomy_vae.sims.galaxies import GalaxySet
from lenstronomy_vae.training.vae import train_vae

# Sized so that an epoch (40 steps) takes ~0.5 s on 2 busy CPU cores: long enough to be killed mid-epoch.
CONFIG = VAEConfig(image_size=64, latent_dim=4, encoder_filters=(8, 8, 8, 8), decoder_filters=(8, 8, 8, 8),
                   dense_units=16)
VALIDATION = 16
BATCH_SIZE = 2
SEED = 3


def train(galaxies_path, checkpoint_dir, epochs):
    validation, training = GalaxySet.load_hdf5(galaxies_path).split(VALIDATION)
    return train_vae(training, validation, CONFIG, epochs=epochs, checkpoint_dir=checkpoint_dir,
                     batch_size=BATCH_SIZE, seed=SEED, verbose=0)


if __name__ == "__main__":
    train(sys.argv[1], sys.argv[2], int(sys.argv[3]))
