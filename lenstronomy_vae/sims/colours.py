"""Galaxy colours: redshifted template SEDs per bulge and disk, integrated through LSST throughputs.

Magnitudes are AB; fluxes are in the survey's image units (``Survey.mag_to_flux``).
"""

import dataclasses
import functools
import os

import galsim
import numpy as np

from lenstronomy_vae.sims.morphology import draw_bulge_disk
from lenstronomy_vae.sims.surveys import get_survey

# Colours: the bulge shines with an elliptical's spectrum, the disk with a spiral or irregular
# one (Coleman, Wu & Weedman templates extended to the UV, shipped with GalSim), redshifted
# and integrated through each band's throughput. GalSim ships LSST throughputs only, so
# colours are available for surveys whose band names are LSST's.
_BULGE_SED = "CWW_E_ext.sed"
_DISK_SEDS = ("CWW_Sbc_ext.sed", "CWW_Scd_ext.sed", "CWW_Im_ext.sed")
_SED_BANDPASS = "LSST_{band}.dat"
# Redshifts follow the Smail et al. form p(z) ∝ z² exp(-(z / z0)^1.5), whose mean 1.41 z0 is
# 0.9 for z0 = 0.64, about that of an i < 25.3 sample; drawn independently of magnitude.
_SMAIL_Z0 = 0.64
_MAX_REDSHIFT = 3.0


@functools.lru_cache(maxsize=None)
def _sed(name):
    return galsim.SED(name, wave_type="Ang", flux_type="flambda")


@functools.lru_cache(maxsize=None)
def _bandpass(band):
    path = os.path.join(galsim.meta_data.share_dir, "bandpasses", _SED_BANDPASS.format(band=band))
    if not os.path.isfile(path):
        raise ValueError(f"no throughput {_SED_BANDPASS.format(band=band)} in GalSim for band {band!r}; "
                         f"colours need LSST band names (u, g, r, i, z, y)")
    return galsim.Bandpass(path, "nm").withZeropoint("AB")


def sed_colours(sed_name, redshift, bands, reference_band):
    """AB magnitude in each band minus that in ``reference_band`` of a template SED at ``redshift``.

    Args:
        sed_name: SED file in GalSim's share directory (e.g. ``"CWW_E_ext.sed"``).
        redshift: redshift of the source.
        bands: LSST band names.
        reference_band: band the magnitudes are relative to.

    Returns:
        float64 array of len(bands) colours [mag].
    """
    sed = _sed(sed_name).atRedshift(redshift)
    reference = sed.calculateMagnitude(_bandpass(reference_band))
    return np.array([sed.calculateMagnitude(_bandpass(band)) - reference for band in bands])


def draw_redshift(rng):
    """A redshift from the Smail et al. distribution with z0 = 0.64, truncated at 3."""
    while True:
        # z^1.5 / z0^1.5 ~ Gamma(2): p(z) ∝ z² exp(-(z/z0)^1.5) after the change of variable.
        z = _SMAIL_Z0 * rng.gamma(2.0) ** (2 / 3)
        if z <= _MAX_REDSHIFT:
            return z


@dataclasses.dataclass
class ColourGalaxy:
    """A bulge + disk galaxy with a spectrum per component, centred at the origin.

    Attributes:
        components: list of (unit-flux ``galsim.GSObject`` in arcsec, flux per band [image units]).
        shape: (q, position angle [rad]) of the component with most reference-band flux.
        redshift: the galaxy's redshift.
        bulge_fraction: bulge share of the reference-band flux.
        seds: SED file name of each component.
    """

    components: list
    shape: tuple
    redshift: float
    bulge_fraction: float
    seds: tuple

    def profile(self, band_index):
        """The galaxy in band ``band_index`` as one ``galsim.GSObject`` (flux in image units)."""
        return galsim.Add([unit * float(fluxes[band_index]) for unit, fluxes in self.components])

    @property
    def fluxes(self):
        """Total flux per band [image units]."""
        return np.sum([fluxes for _, fluxes in self.components], axis=0)


def draw_colour_galaxy(rng, config, reference_band, round_shape=False):
    """A bulge + disk galaxy with redshifted template SEDs, its fluxes in every survey band.

    The morphology comes from :func:`draw_bulge_disk` (``mag`` is the reference-band
    magnitude), the redshift from :func:`draw_redshift`; the bulge gets an elliptical SED and
    the disk a spiral or irregular one chosen uniformly, so bulge-dominated galaxies are redder.
    Band fluxes follow from the survey's zero points (``Survey.mag_to_flux``).

    Args:
        rng: numpy Generator.
        config: object with ``survey``, ``mag_range``, ``hlr_range``, ``min_flux_in_stamp`` and
            ``max_offset``.
        reference_band: band in which ``mag_range`` is measured.
        round_shape: make both components round (q = 1), e.g. to measure an applied shear.
    """
    survey = get_survey(config.survey)
    p = draw_bulge_disk(rng, config)
    redshift = draw_redshift(rng)
    disk_sed = _DISK_SEDS[int(rng.integers(len(_DISK_SEDS)))]
    if round_shape:
        p.disk_q = p.bulge_q = 1.0
    reference_flux = float(survey.mag_to_flux(p.mag, reference_band))
    components, seds = [], []
    for fraction, unit, sed in (
        (1 - p.bulge_fraction, galsim.Exponential(half_light_radius=p.disk_hlr).shear(
            q=p.disk_q, beta=p.beta * galsim.radians), disk_sed),
        (p.bulge_fraction, galsim.DeVaucouleurs(half_light_radius=p.bulge_hlr).shear(
            q=p.bulge_q, beta=p.beta * galsim.radians), _BULGE_SED),
    ):
        if fraction == 0:
            continue
        mags = survey.flux_to_mag(fraction * reference_flux, reference_band) + sed_colours(
            sed, redshift, survey.bands, reference_band)
        fluxes = np.array([survey.mag_to_flux(m, band) for m, band in zip(mags, survey.bands)])
        components.append((unit, fluxes))
        seds.append(sed)
    shape = (p.bulge_q, p.beta) if p.bulge_fraction > 0.5 else (p.disk_q, p.beta)
    return ColourGalaxy(components, shape, redshift, p.bulge_fraction, tuple(seds))


