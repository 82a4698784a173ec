"""Field mode: detection, deblending each source, subtraction, and the joint MAP refinement."""

import warnings

import galsim
import numpy as np
import pytest

from lenstronomy_vae.deblending.map import _shift_matrices, map_refine
from lenstronomy_vae.deblending.scene import (
    NoTrainingRangeWarning,
    OutOfTrainingRangeWarning,
    SkyBackgroundWarning,
    check_sky_subtracted,
    deblend_scene,
)
from lenstronomy_vae.deblending.scene_model import (
    MERGED_CHI2,
    SceneGalaxy,
    SceneResult,
    survey_kernels,
    with_footprint_chi2,
)
from lenstronomy_vae.networks.deblender import Deblender
from lenstronomy_vae.networks.training_range import TrainingRange
from lenstronomy_vae.sims.surveys import get_survey
from lenstronomy_vae.training.shipping import training_range_of


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
    # An untrained decoder models galaxies poorly: splitting would explain its residuals with more of them.
    result = deblend_scene(Deblender.from_vae(lsst_vae), image, max_new_sources=0)
    assert len(result.galaxies) == 2
    for x, y in positions:
        galaxy = result.nearest(x, y)
        assert np.hypot(galaxy.x - x, galaxy.y - y) < 1.0
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


def test_field_mode_adds_galaxies_only_when_they_lower_chi2(lsst_vae, two_galaxy_field):
    image, _ = two_galaxy_field
    deblender = Deblender.from_vae(lsst_vae)
    plain = deblend_scene(deblender, image, max_new_sources=0)
    never = deblend_scene(deblender, image, split_penalty=np.inf)
    assert [(g.x, g.y) for g in never.galaxies] == [(g.x, g.y) for g in plain.galaxies]
    eager = deblend_scene(deblender, image, split_penalty=-np.inf, max_new_sources=3)
    assert len(eager.galaxies) == len(plain.galaxies) + 3
    np.testing.assert_allclose(eager.model + eager.residual, image)
    with pytest.raises(ValueError, match="max_new_sources must be a non-negative integer"):
        deblend_scene(deblender, image, max_new_sources=-1)


def test_given_positions_are_kept_without_detection(lsst_vae, two_galaxy_field):
    image, positions = two_galaxy_field
    deblender = Deblender.from_vae(lsst_vae)
    x, y = np.array(positions).T
    result = deblend_scene(deblender, image + 50.0, positions=(x, y))  # no detection: no sky check either
    assert [(g.x, g.y) for g in result.galaxies] == positions
    assert deblend_scene(deblender, image, positions=([], [])).galaxies == []
    with pytest.raises(ValueError, match=r"equal length; got shapes \(2,\) and \(1,\)"):
        deblend_scene(deblender, image, positions=(x, y[:1]))
    with pytest.raises(ValueError, match="positions"):
        deblend_scene(deblender, image, positions=(x, [np.nan, 1.0]))


def point_scene(*positions):
    """A SceneResult with one-pixel galaxies detected at the (x, y) ``positions`` [pixels] of a 40 × 40 scene."""
    stamp = np.ones((1, 1, 1))
    galaxies = [SceneGalaxy(x, y, round(y), round(x), np.zeros(2), stamp, stamp) for x, y in positions]
    return SceneResult(galaxies, np.zeros((40, 40, 1)), np.zeros((40, 40, 1)))


def test_nearest_finds_no_galaxy_beyond_max_distance():
    result = point_scene((10.0, 10.0), (30.0, 10.0))
    assert result.nearest(12.0, 13.0) is result.galaxies[0]  # 3.6 px
    assert result.nearest(20.0, 30.0) is None  # 22 px from both: not a detection of this position
    assert result.nearest(20.0, 30.0, max_distance=None) is result.galaxies[0]  # no limit: the nearest
    assert result.nearest(12.0, 13.0, max_distance=3.0) is None
    assert point_scene().nearest(1.0, 1.0, max_distance=None) is None
    with pytest.raises(ValueError, match="max_distance"):
        result.nearest(1.0, 1.0, max_distance=-1.0)


def test_match_gives_each_detection_to_one_position_at_most():
    # Two true galaxies merged into one detection at (20, 20): the nearer (1 px) gets it, the other is unmatched.
    result = point_scene((20.0, 20.0), (5.0, 5.0))
    assert result.match([22.5, 21.0, 5.5, 35.0], [20.0, 20.0, 5.0, 35.0]) == [None, 0, 1, None]
    assert result.match([22.5, 21.0], [20.0, 20.0], max_distance=2.0) == [None, 0]
    assert result.match([35.0], [35.0], max_distance=None) == [0]
    assert point_scene().match([1.0], [1.0]) == [None]
    with pytest.raises(ValueError, match="same length"):
        result.match([1.0, 2.0], [1.0])


def test_an_image_with_sky_left_warns_once_with_the_level_per_band(lsst_vae, two_galaxy_field):
    image, _ = two_galaxy_field
    deblender = Deblender.from_vae(lsst_vae)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        deblend_scene(deblender, image + 50.0)
    sky_warnings = [w for w in caught if issubclass(w.category, SkyBackgroundWarning)]
    assert len(sky_warnings) == 1
    message = str(sky_warnings[0].message)
    assert "not consistent with a sky-subtracted image" in message and "subtract the sky" in message
    assert "u +5" in message and "(+1.2" in message  # 50 e- is 1.25 σ of the u band's noise (40 e-)
    for band in "grizy":
        assert f" {band} +" in message
    with warnings.catch_warnings():
        warnings.simplefilter("error", SkyBackgroundWarning)
        deblend_scene(deblender, image)


def test_sky_subtracted_blends_do_not_warn_and_a_sky_of_a_quarter_sigma_does(lsst_scenes):
    sigma = np.sqrt(np.asarray(lsst_scenes.survey.sky_levels))
    for scene in lsst_scenes.blend.astype(np.float64):
        with warnings.catch_warnings():
            warnings.simplefilter("error", SkyBackgroundWarning)
            levels = check_sky_subtracted(scene, sigma, lsst_scenes.bands, "e-")
        assert np.all(np.abs(levels) < 0.25 * sigma)
        for offset in (0.3 * sigma, -0.3 * sigma, np.asarray(lsst_scenes.survey.sky_levels)):
            with pytest.warns(SkyBackgroundWarning, match="is further than 0.25σ from 0"):
                check_sky_subtracted(scene + offset, sigma, lsst_scenes.bands, "e-")


def deblend_recording(deblender, image, **kwargs):
    """(result, warnings raised) of deblend_scene, without splitting (the tiny decoder's residuals would ask for it)."""
    kwargs.setdefault("max_new_sources", 0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = deblend_scene(deblender, image, **kwargs)
    return result, caught


@pytest.fixture(scope="module")
def ranged_deblender(lsst_vae, lsst_scenes):
    """The tiny deblender with the training range of the 24 LSST-like scenes, as load_network gives it."""
    deblender = Deblender.from_vae(lsst_vae)
    deblender.training_range = TrainingRange(training_range_of(lsst_scenes, deblender, encoder_input=lsst_scenes.blend))
    return deblender


def test_a_galaxy_brighter_than_the_training_set_is_flagged_and_the_call_warns_once(ranged_deblender, lsst_scenes):
    # scene 8: one galaxy, inside the range; then the same galaxy 30 times brighter (i ≈ 20 → 16.3)
    scene = lsst_scenes.blend[8].astype(np.float64)
    result, caught = deblend_recording(ranged_deblender, scene)
    assert [g.out_of_range for g in result.galaxies] == [()] and caught == []

    result, caught = deblend_recording(ranged_deblender, scene + 30 * lsst_scenes.isolated[8, 0])
    reasons = result.nearest(22, 22).out_of_range
    assert len(result.galaxies) == 1 and len(reasons) == 3
    assert reasons[0].startswith("peak_") and "(also " in reasons[0]
    assert reasons[1].startswith("stamp_flux_") and " > " in reasons[1]  # the 24 scenes' 99.9th percentile
    assert reasons[2].startswith("flux_i ")
    assert [w.category for w in caught] == [OutOfTrainingRangeWarning]
    message = str(caught[0].message)
    n = len(result.galaxies)
    assert f"{n} of {n} deblended galaxies are outside deblender's training range" in message
    assert "peak" in message and "stamp_flux" in message and "out_of_range" in message


def test_flags_survive_the_map_refinement_and_a_range_can_be_passed(lsst_vae, ranged_deblender, lsst_scenes):
    scene = lsst_scenes.blend[8].astype(np.float64) + 30 * lsst_scenes.isolated[8, 0]
    result, caught = deblend_recording(Deblender.from_vae(lsst_vae), scene, refine=True, map_steps=5,
                                       training_range=ranged_deblender.training_range.entry)
    assert result.map_loss is not None and result.nearest(22, 22).out_of_range
    assert [w.category for w in caught] == [OutOfTrainingRangeWarning]


def test_a_deblender_without_a_recorded_range_says_so_once_and_flags_nothing(lsst_vae, two_galaxy_field):
    image, _ = two_galaxy_field
    result, caught = deblend_recording(Deblender.from_vae(lsst_vae), image)
    assert len(result.galaxies) == 2 and all(g.out_of_range == () for g in result.galaxies)
    assert [w.category for w in caught] == [NoTrainingRangeWarning]
    assert "no recorded training range" in str(caught[0].message)
    sky = np.asarray(get_survey("lsst").sky_levels)
    empty = np.random.default_rng(1).poisson(np.broadcast_to(sky, (50, 50, 6))) - sky
    assert deblend_recording(Deblender.from_vae(lsst_vae), empty)[1] == []  # no galaxies, nothing to say


def _gaussian_stamps(centres, flux=3e4, sigma=2.0, size=45):
    """(size, size, 6) round Gaussians at (x, y) stamp pixels, the same flux in every band [electrons]."""
    rows, cols = np.mgrid[:size, :size]
    image = sum(np.exp(-((cols - x) ** 2 + (rows - y) ** 2) / (2 * sigma**2)) for x, y in centres)
    return np.repeat((flux / (2 * np.pi * sigma**2) * image)[..., None], 6, axis=-1)


def _one_galaxy_result(image, model):
    galaxy = SceneGalaxy(22.0, 22.0, 0, 0, np.zeros(4), model, model, np.ones(6))
    return SceneResult([galaxy], model, image - model)


def test_a_model_that_took_a_neighbours_light_is_likely_merged_and_a_good_isolated_fit_is_not():
    sky = np.asarray(get_survey("lsst").sky_levels)
    noise = np.random.default_rng(3).normal(size=(45, 45, 6)) * np.sqrt(sky)

    def scored(image, model):
        return with_footprint_chi2(_one_galaxy_result(image, model), sky, 45).galaxies[0]

    alone = _gaussian_stamps([(22, 22)])
    galaxy = scored(alone + noise, alone)  # one galaxy fitted by itself: χ² per pixel ≈ 1
    assert 0.9 < galaxy.footprint_chi2 < MERGED_CHI2 and not galaxy.likely_merged
    # two galaxies 5 px apart merged into one detection: one round model between them takes the light of both
    pair = _gaussian_stamps([(19.5, 22), (24.5, 22)])
    merged = scored(pair + noise, _gaussian_stamps([(22, 22)], flux=6e4, sigma=2.6))
    assert merged.footprint_chi2 > MERGED_CHI2 and merged.likely_merged


def test_field_mode_scores_every_galaxy_footprint(lsst_vae, lsst_scenes):
    scene = lsst_scenes.blend[8].astype(np.float64) + 30 * lsst_scenes.isolated[8, 0]  # a bright model
    result = deblend_recording(Deblender.from_vae(lsst_vae), scene)[0]
    assert result.galaxies and all(np.isfinite(galaxy.footprint_chi2) for galaxy in result.galaxies)
