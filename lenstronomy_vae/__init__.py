"""lenstronomy-vae: a variational-autoencoder galaxy model as the lenstronomy light profile 'VAE'.

Importing the package registers 'VAE' (and the fitting step 'LM') with lenstronomy, after which it
is used like any built-in light profile::

    import lenstronomy_vae
    kwargs_model = {
        "source_light_model_list": ["VAE"],
        "source_light_profile_kwargs_list": [{"model": "hst64_large"}],  # the default model
    }

Subpackages, imports running one way (each uses only those listed after it):
``cli`` → ``training`` → ``evaluation`` → ``lensing`` | ``deblending`` → ``networks`` | ``sims`` → ``utils``.

With a lenstronomy this package does not support, importing it warns and leaves lenstronomy alone;
simulation, deblending and training work, and the first lensing use raises the compatibility error.

TensorFlow is quiet: unless ``TF_CPP_MIN_LOG_LEVEL`` is set, or TensorFlow imported, before this
package is first imported, that variable is set to 3 (TensorFlow's C++ errors, warnings and notes
are not printed; Python exceptions still are), and the log lines that TensorFlow and absl write
to stderr while loading, which that variable does not reach, are held back.
``TENSORFLOW_QUIETED`` says whether this happened; ``lenstronomy-vae --verbose`` runs its command
with every line.
"""

import warnings

from lenstronomy_vae.utils.tensorflow_logs import import_tensorflow_quietly

TENSORFLOW_QUIETED = import_tensorflow_quietly()

from lenstronomy_vae.networks import ModelFileError, load_galaxy_model  # noqa: E402  (after TensorFlow, quietly)

__version__ = "0.1.0"

try:  # registers 'VAE' and 'LM' with lenstronomy
    from lenstronomy_vae.lensing import (  # noqa: E402
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
