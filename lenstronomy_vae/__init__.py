"""lenstronomy-vae: a variational-autoencoder galaxy model as the lenstronomy light profile 'VAE'.

Importing the package registers 'VAE' with lenstronomy, after which it is used like any
built-in light profile::

    import lenstronomy_vae
    kwargs_model = {
        "source_light_model_list": ["VAE"],
        "source_light_profile_kwargs_list": [{"model": "hst64"}],
    }

TensorFlow is imported only when a VAE profile is built or one of the exports below is used.
"""

import importlib

from lenstronomy_vae.lenstronomy_patch import register

__version__ = "0.1.0"

register()

# Public name → module, imported on first use (PEP 562) to keep ``import lenstronomy_vae`` light.
_EXPORTS = {
    "VAEProfile": "lenstronomy_vae.profile",
    "load_galaxy_model": "lenstronomy_vae.models",
    "ModelFileError": "lenstronomy_vae.models",
    "vae_source_params": "lenstronomy_vae.fitting",
    "latent_prior": "lenstronomy_vae.fitting",
    "check_data": "lenstronomy_vae.fitting",
}

__all__ = ["register", "__version__", *_EXPORTS]


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'lenstronomy_vae' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_EXPORTS])
