"""The CatSim-format catalogue for BlendingToolKit: BTK's columns, magnitudes, sizes and angles in its conventions."""

import math

import galsim
import numpy as np
import pytest

from lenstronomy_vae.sims.blends import BlendSimConfig
from lenstronomy_vae.sims.catsim import SHAPE_COLUMNS, catsim_catalog
from lenstronomy_vae.sims.colours import draw_colour_galaxy
from lenstronomy_vae.sims.surveys import LSST


@pytest.fixture(scope="module")
def table():
    return catsim_catalog(40, seed=7)


def test_has_the_columns_btk_reads(table):
    needed = {"ra", "dec", *(f"{band}_ab" for band in "ugrizy"), *SHAPE_COLUMNS}
    assert needed <= set(table.colnames)
    assert len(table) == 40 and np.all(table["ra"] == 0) and np.all(table["dec"] == 0)
    for name in needed:
        assert np.all(np.isfinite(table[name])), name


def test_magnitudes_sizes_and_angles_follow_btk_conventions(table):
    config = BlendSimConfig()
    assert np.all((table["i_ab"] >= config.mag_range[0]) & (table["i_ab"] <= config.mag_range[1]))
    total = table["fluxnorm_disk"] + table["fluxnorm_bulge"] + table["fluxnorm_agn"]
    np.testing.assert_allclose(total, 1.0)
    assert np.all(table["a_d"] >= table["b_d"]) and np.all(table["b_d"] > 0)
    hlr = np.sqrt(table["a_d"] * table["b_d"])
    assert np.all((hlr >= config.hlr_range[0]) & (hlr <= config.hlr_range[1]))
    bulge = table["fluxnorm_bulge"] > 0
    assert np.all(table["a_b"][~bulge] == 0) and np.all(table["a_b"][bulge] >= table["b_b"][bulge])
    assert np.all(table["pa_disk"] == table["pa_bulge"])  # BTK asserts it when both components shine
    assert np.all((table["pa_disk"] >= 0) & (table["pa_disk"] < 180))


def test_rows_are_the_blend_simulators_galaxies():
    """Row 0 drawn as BTK draws it (get_catsim_galaxy) matches draw_colour_galaxy's profile and fluxes."""
    row = catsim_catalog(1, seed=11)[0]
    galaxy = draw_colour_galaxy(np.random.default_rng(11), BlendSimConfig(), "i")
    for k, band in enumerate("ugrizy"):
        np.testing.assert_allclose(LSST.mag_to_flux(row[f"{band}_ab"], band), galaxy.fluxes[k], rtol=1e-9)
    flux = galaxy.fluxes[3]
    disk = galsim.Exponential(flux=row["fluxnorm_disk"] * flux, half_light_radius=math.sqrt(row["a_d"] * row["b_d"]))
    btk_like = disk.shear(q=row["b_d"] / row["a_d"], beta=row["pa_disk"] * galsim.degrees)
    if row["fluxnorm_bulge"] > 0:
        bulge = galsim.DeVaucouleurs(flux=row["fluxnorm_bulge"] * flux,
                                     half_light_radius=math.sqrt(row["a_b"] * row["b_b"]))
        btk_like += bulge.shear(q=row["b_b"] / row["a_b"], beta=row["pa_bulge"] * galsim.degrees)
    ours = galaxy.profile(3)
    psf = galsim.Gaussian(fwhm=0.7)
    a = galsim.Convolve(btk_like, psf).drawImage(nx=45, ny=45, scale=0.2).array
    b = galsim.Convolve(ours, psf).drawImage(nx=45, ny=45, scale=0.2).array
    np.testing.assert_allclose(a, b, atol=1e-6 * b.max())


def test_same_seed_same_catalogue_and_bad_arguments():
    np.testing.assert_array_equal(catsim_catalog(3, seed=1)["i_ab"], catsim_catalog(3, seed=1)["i_ab"])
    with pytest.raises(ValueError):
        catsim_catalog(0)
    with pytest.raises(ValueError):
        catsim_catalog(2, seed=-1)
