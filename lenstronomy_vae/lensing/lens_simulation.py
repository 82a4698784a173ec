"""A simulated galaxy-scale lens: SIE + external shear, a GalSim source with realistic structure.

The source is a GalSim galaxy (COSMOS-like morphology with star-forming knots) drawn without PSF
and placed behind the lens through lenstronomy's INTERPOL profile, so a model fitted to it did not
generate the data. Angles in arcsec, fluxes in counts/s.
"""

import dataclasses

import numpy as np
from lenstronomy.Data.imaging_data import ImageData
from lenstronomy.Data.psf import PSF
from lenstronomy.ImSim.image_model import ImageModel
from lenstronomy.LensModel.lens_model import LensModel
from lenstronomy.LightModel.light_model import LightModel
from lenstronomy.Util import simulation_util

from lenstronomy_vae.sims.galaxies import GalaxySimConfig, simulate_galaxies

LENS_PARAMS = ["theta_E", "e1", "e2", "center_x", "center_y", "gamma1", "gamma2"]


@dataclasses.dataclass
class LensSettings:
    """The simulated observation.

    Attributes:
        num_pix: image side, pixels.
        pixel_scale: arcsec per pixel.
        exposure_time: seconds (Poisson noise of the source).
        background_rms: background noise per pixel, counts/s.
        source_flux: total source flux, counts/s.
        lens: SIE and SHEAR parameters (arcsec, dimensionless ellipticities and shears).
        source_center: source position (arcsec).
        psf_fwhm: Gaussian PSF FWHM, arcsec.
    """

    num_pix: int = 64
    pixel_scale: float = 0.05
    exposure_time: float = 2000.0
    background_rms: float = 0.02
    source_flux: float = 40.0
    lens: dict = dataclasses.field(
        default_factory=lambda: {"theta_E": 0.85, "e1": 0.08, "e2": -0.05, "center_x": 0.02,
                                 "center_y": -0.01, "gamma1": 0.03, "gamma2": 0.02}
    )
    source_center: tuple = (0.06, -0.04)
    psf_fwhm: float = 0.1


@dataclasses.dataclass
class LensSimulation:
    """A simulated lens: lenstronomy data, PSF and numerics kwargs, the truth and the noise.

    ``source`` says what the source galaxy is, in words (e.g. which simulated population).
    """

    settings: LensSettings
    kwargs_data: dict
    kwargs_psf: dict
    kwargs_numerics: dict
    source_stamp: np.ndarray
    source_pixel_scale: float
    source: str = "a user-given stamp"


# What simulate_galaxies draws, by source (GalaxySimConfig.source once resolved).
_SOURCE_KINDS = {"cosmos": "a GalSim galaxy with the parametric fit of a real COSMOS galaxy",
                 "parametric": "a GalSim bulge + disk galaxy drawn from COSMOS-like distributions"}


def _lens_kwargs(lens):
    return [
        {key: lens[key] for key in ("theta_E", "e1", "e2", "center_x", "center_y")},
        {"gamma1": lens["gamma1"], "gamma2": lens["gamma2"], "ra_0": 0.0, "dec_0": 0.0},
    ]


def extended_galaxy(seed=0, candidates=16, half_light_radius=0.18):
    """The intrinsic stamp (no PSF) of a resolved simulated HST-like galaxy.

    Of ``candidates`` galaxies, the one whose half-light radius is closest to
    ``half_light_radius`` (arcsec): resolved behind the lens, yet inside the region of
    multiple images.

    Returns:
        (stamp (H, W) in image units, pixel scale in arcsec, what the galaxy is in words).
    """
    galaxies = simulate_galaxies(candidates, GalaxySimConfig(), seed=seed)
    chosen = int(np.argmin(np.abs(galaxies.truth["hlr"] - half_light_radius)))
    kind = _SOURCE_KINDS[galaxies.config.source] + (" with star-forming knots" if galaxies.truth["has_knots"][chosen]
                                                    else "")
    return galaxies.intrinsic[chosen, ..., 0].astype(float), galaxies.pixel_scale, kind


def simulate_lens(seed=0, settings=None, source_stamp=None, source_pixel_scale=None):
    """Simulate a lensed galaxy; every random draw comes from ``seed``.

    Args:
        seed: seed of the source galaxy and of the noise.
        settings: :class:`LensSettings`; defaults if None.
        source_stamp: intrinsic source image (H, W), any flux units (rescaled to
            ``settings.source_flux``); default: :func:`extended_galaxy`.
        source_pixel_scale: arcsec per pixel of ``source_stamp``.

    Returns:
        :class:`LensSimulation` whose ``kwargs_data['image_data']`` holds the noisy image (counts/s).
    """
    settings = settings or LensSettings()
    source = "a user-given stamp"
    if source_stamp is None:
        source_stamp, source_pixel_scale, source = extended_galaxy(seed)
    galaxy = np.asarray(source_stamp, dtype=float) * settings.source_flux / np.sum(source_stamp)
    kwargs_data = simulation_util.data_configure_simple(
        settings.num_pix, settings.pixel_scale, settings.exposure_time, settings.background_rms
    )
    kwargs_psf = {"psf_type": "GAUSSIAN", "fwhm": settings.psf_fwhm, "truncation": 5}
    kwargs_numerics = {"supersampling_factor": 3}
    truth_model = ImageModel(
        ImageData(**kwargs_data), PSF(**kwargs_psf), LensModel(["SIE", "SHEAR"]), LightModel(["INTERPOL"]),
        kwargs_numerics=kwargs_numerics,
    )
    scale = source_pixel_scale
    kwargs_source = [{"image": galaxy / scale**2, "amp": 1.0, "center_x": settings.source_center[0],
                      "center_y": settings.source_center[1], "phi_G": 0.0, "scale": scale}]
    clean = truth_model.image(_lens_kwargs(settings.lens), kwargs_source)
    rng = np.random.default_rng(seed)
    counts = rng.poisson(np.maximum(clean, 0) * settings.exposure_time) / settings.exposure_time
    kwargs_data["image_data"] = counts + rng.normal(0.0, settings.background_rms, clean.shape)
    return LensSimulation(settings, kwargs_data, kwargs_psf, kwargs_numerics, galaxy, scale, source)
