"""Large LSST-like fields with their truth."""

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from lenstronomy_vae.sims.field import simulate_field


@pytest.fixture(scope="module")
def field():
    return simulate_field((120, 160), density=60, seed=4)


def test_a_seed_gives_the_same_field_whatever_the_processes(field):
    again = simulate_field((120, 160), density=60, seed=4, processes=2)
    np.testing.assert_array_equal(again.image, field.image)
    assert len(again.truth) == len(field.truth) > 5
    assert not np.array_equal(simulate_field((120, 160), density=60, seed=5).image, field.image)


def test_the_truth_places_every_galaxy_on_the_image_with_its_flux(field):
    truth = field.truth
    assert field.image.shape == (120, 160, 6) and field.image.dtype == np.float32
    assert np.all((truth["x"] >= -0.5) & (truth["x"] < 159.5) & (truth["y"] >= -0.5) & (truth["y"] < 119.5))
    # The brightest galaxy's i-band light is where the truth puts it.
    brightest = truth[int(np.argmax(truth["flux"][:, 3]))]
    row, col = int(round(brightest["y"])), int(round(brightest["x"]))
    window = field.image[max(row - 6, 0):row + 7, max(col - 6, 0):col + 7, 3]
    assert window.sum() > 0.3 * brightest["flux"][3]
    # Mean galaxies per arcmin²: 60 asked, Poisson over 0.53 arcmin².
    assert abs(len(truth) - 60 * 120 * 160 * 0.04 / 3600) < 4 * np.sqrt(60 * 120 * 160 * 0.04 / 3600)


def test_the_fits_file_is_a_cube_deblend_reads_with_its_truth(field, tmp_path):
    path = tmp_path / "field.fits"
    field.save_fits(path)
    with fits.open(path) as hdus:
        np.testing.assert_array_equal(np.moveaxis(hdus[0].data, 0, -1), field.image)
        assert hdus[0].header["BANDS"] == "u g r i z y"
    truth = Table.read(path, hdu="TRUTH")
    np.testing.assert_allclose(truth["x"], field.truth["x"])


def test_an_empty_field_and_bad_arguments():
    empty = simulate_field((30, 30), density=0, seed=1)
    assert len(empty.truth) == 0 and empty.truth.colnames == ["x", "y", "flux", "redshift", "g1", "g2"]
    with pytest.raises(ValueError, match="density must be a non-negative"):
        simulate_field((30, 30), density=-1)
    with pytest.raises(ValueError, match=r"shape must be \(H, W\)"):
        simulate_field(30, density=1)
