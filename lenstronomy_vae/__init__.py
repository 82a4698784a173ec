"""lenstronomy-vae: a variational-autoencoder galaxy model as the lenstronomy light profile 'VAE'.

Importing the package registers 'VAE' (and the fitting step 'LM') with lenstronomy, after which it
is used like any built-in light profile::

    import lenstronomy_vae
    kwargs_model = {
        "source_light_model_list": ["VAE"],
        "source_light_profile_kwargs_list": [{"model": "hst64"}],
    }

Subpackages, imports running one way (each uses only those listed after it):
``cli`` → ``training`` → ``evaluation`` → ``lensing`` | ``deblending`` → ``networks`` | ``sims`` → ``utils``.

With a lenstronomy this package does not support, importing it warns and leaves lenstronomy alone;
simulation, deblending and training work, and the first lensing use raises the compatibility error.
"""

import warnings

from lenstronomy_vae.networks import ModelFileError, load_galaxy_model

__version__ = "0.1.0"

try:  # registers 'VAE' and 'LM' with lenstronomy
    from lenstronomy_vae.lensing import (
        LenstronomyCompatibilityError,
        VAEProfile,
        check_data,
        fit_galaxy,
        latent_prior,
        register,
        vae_source_params,
    )
except ImportError as error:  # LenstronomyCompatibilityError is an ImportError
    _LENSING_ERROR = error
    warnings.warn(f"lenstronomy_vae: the 'VAE' light profile and the 'LM' step are not registered: {error}. "
                  "Simulation, deblending and training work.", stacklevel=2)
else:
    _LENSING_ERROR = None

_LENSING_NAMES = ("LenstronomyCompatibilityError", "VAEProfile", "check_data", "fit_galaxy", "latent_prior",
                  "register", "vae_source_params")

__all__ = ["__version__", "LenstronomyCompatibilityError", "ModelFileError", "VAEProfile", "check_data", "fit_galaxy",
           "latent_prior", "load_galaxy_model", "register", "vae_source_params"]


def __getattr__(name):
    if name in _LENSING_NAMES and _LENSING_ERROR is not None:
        raise ImportError(f"lenstronomy_vae.{name} needs lenstronomy's lensing tools: {_LENSING_ERROR}") \
            from _LENSING_ERROR
    raise AttributeError(f"module 'lenstronomy_vae' has no attribute {name!r}")
