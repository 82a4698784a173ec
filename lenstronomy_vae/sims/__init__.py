"""GalSim simulations: surveys, rendering, galaxy populations, isolated-galaxy sets and blended scenes.

Everything here is independent of lenstronomy and of the networks.
"""

from lenstronomy_vae.sims.blends import BlendSet, BlendSimConfig, simulate_blends
from lenstronomy_vae.sims.field import FieldSet, simulate_field
from lenstronomy_vae.sims.galaxies import GalaxySet, GalaxySimConfig, simulate_galaxies
from lenstronomy_vae.sims.rendering import convolve_bands, psf_kernel
from lenstronomy_vae.sims.shapes import adaptive_moments_shape
from lenstronomy_vae.sims.surveys import HST_ACS_F814W, LSST, SURVEYS, Survey, get_survey

__all__ = ["BlendSet", "BlendSimConfig", "FieldSet", "GalaxySet", "GalaxySimConfig", "HST_ACS_F814W", "LSST",
           "SURVEYS", "Survey", "adaptive_moments_shape", "convolve_bands", "get_survey", "psf_kernel",
           "simulate_blends", "simulate_field", "simulate_galaxies"]
