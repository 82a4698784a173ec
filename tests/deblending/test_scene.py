"""Field mode: detection, deblending each source, subtraction, and the joint MAP refinement."""

import galsim
import numpy as np
import pytest

from lenstronomy_vae.deblending.map import _shift_matrices, map_refine
from lenstronomy_vae.deblending.scene import deblend_scene
from lenstronomy_vae.deblending.scene_model import survey_kernels
from lenstronomy_vae.networks.deblender import Deblender
from lenstronomy_vae.sims.surveys import get_survey


@pytest.fixture(scope="module")
def two_galaxy_field():
    """A 70×70 LSST-like field: two galaxies 30 px apart, Poisson noise, and their positions."""
    survey = get_survey("lsst")
    positions = [(20.0, 30.0), (50.0, 40.0)]  # (x, y) pixels
    image = np.zeros((70, 70, 6))
    for (x, y), flux in zip(positions, (4e5, 2e5)):
        for b, band in enumerate(survey.bands):
            galaxy = galsim.Convolve(galsim.Exponential(half_light_radius=0.5, flux=flux), survey.psf(band))
            image[:, :, b] += galaxy.drawImage(nx=70, ny=70, scale=0.2, offset=(x - 34.5, y - 34.5)).array
    sky = np.asarray(survey.sky_levels)
    noisy = np.random.default_rng(0).poisson(image + sky) - sky
    return noisy, positions


def test_field_mode_finds_and_separates_two_well_separated_galaxies(lsst_vae, two_galaxy_field):
    image, positions = two_galaxy_field
    result = deblend_scene(Deblender.from_vae(lsst_vae), image)
    assert len(result.galaxies) == 2
    for x, y in positions:
        galaxy = result.nearest(x, y)
        assert np.hypot(galaxy.x - x, galaxy.y - y) < 0.5
    np.testing.assert_allclose(result.model + result.residual, image)
    first = result.isolated(result.galaxies[0])
    assert first[30, 20].sum() > 0 and first[40, 50].sum() == 0  # stamps are 45 px: they do not reach


def test_map_refinement_lowers_the_posterior_loss(lsst_vae, two_galaxy_field):
    image, _ = two_galaxy_field
    deblender = Deblender.from_vae(lsst_vae)
    start = deblend_scene(deblender, image)
    refined = map_refine(deblender, image, start, steps=30)

    sky = np.asarray(get_survey("lsst").sky_levels)
    def objective(result):
        latents = np.stack([g.latent for g in result.galaxies])
        chi2 = np.sum(result.residual**2 / (sky + np.maximum(image, 0)))
        return 0.5 * chi2 + 0.5 * np.sum(latents**2)

    before, after = refined.map_loss
    assert before == pytest.approx(objective(start), rel=1e-6) and after < before
    assert objective(refined) <= after * (1 + 1e-9)  # the linear flux refit only lowers χ²
    assert [g.row0 for g in refined.galaxies] == [g.row0 for g in start.galaxies]


def test_shift_matrices_place_stamp_rows_and_drop_those_outside():
    matrices = _shift_matrices([-1, 3], stamp_size=3, image_size=5)
    np.testing.assert_array_equal(matrices[0] @ np.array([1.0, 2.0, 3.0]), [2, 3, 0, 0, 0])
    np.testing.assert_array_equal(matrices[1] @ np.array([1.0, 2.0, 3.0]), [0, 0, 0, 1, 2])


def test_scene_with_wrong_bands_or_nan_is_rejected(lsst_vae):
    deblender = Deblender.from_vae(lsst_vae)
    with pytest.raises(ValueError, match=r"6 bands .* got shape \(50, 50, 3\)"):
        deblend_scene(deblender, np.zeros((50, 50, 3)))
    image = np.zeros((50, 50, 6))
    image[1, 2, 0] = np.inf
    with pytest.raises(ValueError, match=r"1 NaN or infinite pixel\(s\), first at .* \(1, 2, 0\)"):
        deblend_scene(deblender, image)


def test_empty_field_gives_no_galaxies(lsst_vae):
    sky = np.asarray(get_survey("lsst").sky_levels)
    image = np.random.default_rng(1).poisson(np.broadcast_to(sky, (50, 50, 6))) - sky
    result = deblend_scene(Deblender.from_vae(lsst_vae), image)
    assert result.galaxies == [] and np.all(result.model == 0)
    assert survey_kernels("lsst", ("i",)).shape == (1, 25, 25)


def test_a_second_detection_pass_runs_on_the_residual(lsst_vae, two_galaxy_field):
    image, positions = two_galaxy_field
    result = deblend_scene(Deblender.from_vae(lsst_vae), image, max_iterations=2)
    assert len(result.galaxies) >= 2
    np.testing.assert_allclose(result.model + result.residual, image)
    for first, second in zip(result.galaxies, result.galaxies[1:]):
        assert np.hypot(first.x - second.x, first.y - second.y) >= 5.0
