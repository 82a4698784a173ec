"""A CatSim-format galaxy catalogue from the population of the LSST-like blend simulator, for BlendingToolKit.

BTK (``btk.catalog.CatsimCatalog`` and ``btk.draw_blends.get_catsim_galaxy``) draws a CatSim row as an
exponential disk plus a de Vaucouleurs bulge (plus an AGN point source) and reads these columns:

- ``ra``, ``dec``: required by ``CatsimCatalog``; BTK's sampling functions overwrite them with the
  shift from the stamp centre [arcsec]. Here 0.
- ``<band>_ab``: AB magnitude of the whole galaxy in each band (u g r i z y); the flux in electrons is
  ``surveycodex.utilities.mag2counts``, the same number as :meth:`Survey.mag_to_flux` of ``"lsst"``.
- ``fluxnorm_disk``, ``fluxnorm_bulge``, ``fluxnorm_agn``: relative flux of each component; BTK uses the
  same split in every band.
- ``a_d``, ``b_d``, ``a_b``, ``b_b``: semi-major and semi-minor half-light radii [arcsec] of disk and
  bulge; BTK draws ``half_light_radius = sqrt(a b)`` sheared to axis ratio ``q = b / a``, so
  ``a = hlr / sqrt(q)`` and ``b = hlr · sqrt(q)`` with GalSim's (circular, area-preserving) hlr.
  0 for a component without flux.
- ``pa_disk``, ``pa_bulge``: position angle [degrees], GalSim's ``shear(beta=...)``, counter-clockwise
  from +x; BTK requires them equal when both components have flux.

The galaxies are :func:`lenstronomy_vae.sims.colours.draw_colour_galaxy`'s (the COSMOS-like bulge + disk
population of :func:`lenstronomy_vae.sims.morphology.draw_bulge_disk` with redshifted template colours).
CatSim cannot give the bulge and disk different colours: the magnitudes are those of the whole galaxy
in each band and the split is the reference (i) band's, so bulge-dominated and disk-dominated parts are
drawn with one colour.
"""

import copy
import math

import numpy as np
from astropy.table import Table

from lenstronomy_vae.sims.blends import BlendSimConfig
from lenstronomy_vae.sims.colours import draw_colour_galaxy
from lenstronomy_vae.sims.morphology import draw_bulge_disk
from lenstronomy_vae.sims.surveys import get_survey
from lenstronomy_vae.utils.checks import check_count, check_seed

SHAPE_COLUMNS = ("fluxnorm_disk", "fluxnorm_bulge", "fluxnorm_agn", "a_d", "b_d", "pa_disk", "a_b", "b_b",
                 "pa_bulge")


def catsim_row(rng, config, reference_band="i"):
    """One galaxy of the blend simulator's population as a dict of CatSim columns.

    Args:
        rng: numpy Generator; advanced as by one :func:`draw_colour_galaxy` call.
        config: :class:`lenstronomy_vae.sims.blends.BlendSimConfig` (survey, magnitude, size and stamp cuts).
        reference_band: band of ``config.mag_range`` and of the bulge/disk split.
    """
    survey = get_survey(config.survey)
    # draw_colour_galaxy draws its morphology first: the same draw from a copy of the generator gives
    # the sizes and axis ratios that the galaxy's GalSim profile hides.
    morphology = draw_bulge_disk(copy.deepcopy(rng), config)
    galaxy = draw_colour_galaxy(rng, config, reference_band)
    bulge = galaxy.bulge_fraction
    angle = math.degrees(morphology.beta) % 180.0
    row = {f"{band}_ab": float(survey.flux_to_mag(flux, band)) for band, flux in zip(survey.bands, galaxy.fluxes)}
    row.update(
        redshift=galaxy.redshift,
        fluxnorm_disk=1.0 - bulge, fluxnorm_bulge=bulge, fluxnorm_agn=0.0,
        a_d=morphology.disk_hlr / math.sqrt(morphology.disk_q), b_d=morphology.disk_hlr * math.sqrt(morphology.disk_q),
        pa_disk=angle,
        a_b=morphology.bulge_hlr / math.sqrt(morphology.bulge_q) if bulge > 0 else 0.0,
        b_b=morphology.bulge_hlr * math.sqrt(morphology.bulge_q) if bulge > 0 else 0.0,
        pa_bulge=angle,
    )
    return row


def catsim_catalog(n, config=None, seed=0, reference_band="i"):
    """A CatSim-format astropy Table of ``n`` galaxies, for ``btk.catalog.CatsimCatalog(table)``.

    Args:
        n: number of galaxies.
        config: :class:`BlendSimConfig`; default ``BlendSimConfig()`` (LSST, i 20–25.3, the blend simulator's
            size and stamp cuts).
        seed: seed of the numpy Generator the galaxies are drawn with.
        reference_band: band of ``config.mag_range``.

    Returns:
        Table with ``galtileid``, ``ra``, ``dec`` (0), ``redshift``, ``<band>_ab`` for the survey's bands and
        the :data:`SHAPE_COLUMNS` (see the module docstring for units and conventions).
    """
    check_count("n", n)
    check_seed(seed)
    config = BlendSimConfig() if config is None else config
    rng = np.random.default_rng(seed)
    rows = [catsim_row(rng, config, reference_band) for _ in range(n)]
    bands = get_survey(config.survey).bands
    table = Table()
    table["galtileid"] = np.arange(n, dtype=np.int64)
    table["ra"] = np.zeros(n)
    table["dec"] = np.zeros(n)
    for name in ("redshift", *(f"{band}_ab" for band in bands), *SHAPE_COLUMNS):
        table[name] = np.array([row[name] for row in rows], dtype=np.float64)
    table.meta.update(source="lenstronomy_vae.sims.catsim", seed=int(seed), reference_band=reference_band,
                      config=str(config.to_dict()))
    return table
