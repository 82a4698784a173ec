"""Everything that touches lenstronomy: the light profile 'VAE', its registration, the 'LM' step, fits.

Importing this subpackage registers 'VAE' and 'LM' with lenstronomy; on a lenstronomy version
it does not support, the import raises :class:`LenstronomyCompatibilityError` naming what differs.
"""

from lenstronomy_vae.lensing.cutouts import LensCutout, read_lens_table, write_simulated_lenses
from lenstronomy_vae.lensing.galaxy_fit import GalaxyFitWarning, fit_galaxy
from lenstronomy_vae.lensing.lens_fit import FitSettings, fit_lens, lens_params_start, run_warm_starts, warm_start_steps
from lenstronomy_vae.lensing.lens_simulation import LensSettings, simulate_lens
from lenstronomy_vae.lensing.parameters import check_data, latent_prior, vae_source_params
from lenstronomy_vae.lensing.profile import VAEProfile
from lenstronomy_vae.lensing.registration import LenstronomyCompatibilityError, is_registered, register

__all__ = ["FitSettings", "GalaxyFitWarning", "LensCutout", "LensSettings", "LenstronomyCompatibilityError",
           "VAEProfile", "check_data", "fit_galaxy", "fit_lens", "is_registered", "latent_prior",
           "lens_params_start", "read_lens_table", "register", "run_warm_starts", "simulate_lens",
           "vae_source_params", "warm_start_steps", "write_simulated_lenses"]

register()
