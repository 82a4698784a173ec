"""LSST-like blended scenes: survey numbers, truth consistency, noise, shapes, reproducibility, storage."""

import dataclasses

import numpy as np
import pytest
import surveycodex
from surveycodex.utilities import mag2counts

from lenstronomy_vae.sims.blends import BlendSet, BlendSimConfig, simulate_blends
from lenstronomy_vae.sims.colours import sed_colours
from lenstronomy_vae.sims.surveys import LSST

SHEAR = (0.05, -0.03)


@pytest.fixture(scope="module")
def scenes():
    return simulate_blends(4, BlendSimConfig(n_objects_range=(1, 3)), seed=5)


@pytest.fixture(scope="module")
def round_scenes():
    # Galaxies brighter than i = 25.3: HSM's shapes of the faintest, barely resolved ones scatter by ~2e-3.
    config = BlendSimConfig(n_objects_range=(1, 1), round_galaxies=True, mag_range=(20.0, 25.3))
    return simulate_blends(3, config, seed=2)


@pytest.fixture(scope="module")
def sheared_scenes():
    # Galaxies at least as large as the PSF: re-Gaussianization overestimates the shear of
    # unresolved ones by ~8 %.
    config = BlendSimConfig(n_objects_range=(1, 1), hlr_range=(0.5, 1.0), round_galaxies=True, shear=SHEAR)
    return simulate_blends(3, config, seed=2)


def test_lsst_survey_takes_its_numbers_from_surveycodex():
    codex = surveycodex.get_survey("LSST")
    assert LSST.bands == ("u", "g", "r", "i", "z", "y") and LSST.pixel_scale == 0.2 and LSST.stamp_size == 45
    for band in LSST.bands:
        # One image unit is one electron of the full exposure, as surveycodex counts them.
        assert LSST.mag_to_flux(24.0, band) == pytest.approx(mag2counts(24.0, codex, band).value, abs=1.0)
        assert LSST.psf_models[LSST.band_index(band)].fwhm == codex.get_filter(band).psf_fwhm.value
    sky_r = LSST.sky_levels[LSST.band_index("r")]
    assert sky_r == pytest.approx(LSST.mag_to_flux(21.2, "r") * 0.04)
    assert LSST.noise_sigma[LSST.band_index("r")] == pytest.approx(np.sqrt(sky_r))


def test_elliptical_template_is_redder_than_irregular():
    bands = ("g", "r")
    elliptical = sed_colours("CWW_E_ext.sed", 0.5, bands, "r")
    irregular = sed_colours("CWW_Im_ext.sed", 0.5, bands, "r")
    assert elliptical[0] - irregular[0] > 0.8  # g - r colour difference [mag]


def test_scenes_are_six_band_45_pixel_stamps(scenes):
    for images in (scenes.blend, scenes.target, scenes.target_intrinsic, scenes.target_noisy):
        assert images.dtype == np.float32 and images.shape == (4, 45, 45, 6)
    assert scenes.isolated.shape == (4, 3, 45, 45, 6)
    assert list(scenes.truth["object"][scenes.truth["scene"] == 0]) == list(range(scenes.n_objects[0]))


def test_target_light_in_stamp_matches_its_truth_flux(scenes):
    in_stamp = scenes.target.sum(axis=(1, 2))
    intrinsic = scenes.target_intrinsic.sum(axis=(1, 2))
    np.testing.assert_allclose(in_stamp, scenes.target_truth["flux"], rtol=0.01)
    np.testing.assert_allclose(in_stamp, intrinsic, rtol=0.005)


def test_noiseless_target_is_blend_minus_neighbours(scenes):
    neighbours = scenes.isolated[:, 1:].sum(axis=1)
    # float32 images: a bright neighbour's rounding (1e-7 of its peak) stays in the difference.
    np.testing.assert_allclose(scenes.blend_noiseless - neighbours, scenes.target,
                               atol=1e-6 * scenes.blend_noiseless.max())
    assert np.all(scenes.isolated[np.arange(3)[None, :] >= scenes.n_objects[:, None]] == 0)


def test_noise_is_poisson_of_sources_plus_sky(scenes):
    sky = np.asarray(LSST.sky_levels, dtype=np.float32)
    for noisy, noiseless in ((scenes.blend, scenes.blend_noiseless), (scenes.target_noisy, scenes.target)):
        pulls = (noisy - noiseless) / np.sqrt(np.clip(noiseless, 0, None) + sky)
        assert abs(pulls.mean()) < 0.02 and abs(pulls.std() - 1) < 0.02
    assert not np.allclose(scenes.blend - scenes.blend_noiseless, scenes.target_noisy - scenes.target)


def test_bright_galaxy_adds_its_own_shot_noise():
    bright = simulate_blends(1, BlendSimConfig(mag_range=(16.0, 16.5), n_objects_range=(1, 1)), seed=0)
    sky = np.asarray(LSST.sky_levels, dtype=np.float32)
    core = bright.target[0] > sky  # pixels where the galaxy outshines the sky
    residual = (bright.target_noisy[0] - bright.target[0])[core]
    assert core.sum() > 20
    sky_only = residual / np.sqrt(np.broadcast_to(sky, core.shape)[core])
    full = residual / np.sqrt(bright.target[0][core] + np.broadcast_to(sky, core.shape)[core])
    assert sky_only.std() > 1.3 and abs(full.std() - 1) < 0.2


def test_same_seed_gives_identical_scenes(scenes):
    again = simulate_blends(4, BlendSimConfig(n_objects_range=(1, 3)), seed=5)
    for name in ("blend", "isolated", "target_intrinsic", "target_noisy", "n_objects"):
        np.testing.assert_array_equal(getattr(scenes, name), getattr(again, name))
    np.testing.assert_array_equal(scenes.truth, again.truth)
    other = simulate_blends(4, BlendSimConfig(n_objects_range=(1, 3)), seed=6)
    assert not np.allclose(scenes.blend, other.blend)


def test_blendedness_is_zero_alone_and_below_one_in_blends(scenes, round_scenes):
    np.testing.assert_array_equal(round_scenes.truth["blendedness"], 0.0)
    blended = scenes.truth[np.repeat(scenes.n_objects, scenes.n_objects) > 1]["blendedness"]
    assert len(blended) > 0 and np.all((blended >= 0) & (blended < 1)) and blended.max() > 0
    assert np.all(scenes.truth[np.repeat(scenes.n_objects, scenes.n_objects) == 1]["blendedness"] == 0)


def test_round_galaxies_measure_round(round_scenes):
    for field in ("g1", "g2", "hsm_g1", "hsm_g2", "regauss_g1", "regauss_g2"):
        np.testing.assert_allclose(round_scenes.truth[field], 0.0, atol=2e-3)


def test_sheared_round_galaxies_measure_the_applied_shear(sheared_scenes):
    truth = sheared_scenes.truth
    np.testing.assert_allclose(truth["g1"], SHEAR[0], atol=1e-12)
    np.testing.assert_allclose(truth["g2"], SHEAR[1], atol=1e-12)
    np.testing.assert_allclose(truth["regauss_g1"], SHEAR[0], rtol=0.03)
    np.testing.assert_allclose(truth["regauss_g2"], SHEAR[1], rtol=0.03)
    # Without PSF correction the round PSF dilutes the shear but keeps its direction.
    assert np.all(truth["hsm_g1"] > 0) and np.all(truth["hsm_g1"] < SHEAR[0])
    assert np.all(truth["hsm_g2"] < 0) and np.all(truth["hsm_g2"] > SHEAR[1])


def test_hdf5_round_trip(scenes, tmp_path):
    path = tmp_path / "blends.h5"
    scenes.save_hdf5(path)
    loaded = BlendSet.load_hdf5(path)
    for name in ("blend", "isolated", "target_intrinsic", "target_noisy", "n_objects"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(scenes, name))
    np.testing.assert_array_equal(loaded.truth, scenes.truth)
    assert loaded.config == scenes.config and loaded.seed == 5
    assert list(tmp_path.iterdir()) == [path]


@pytest.mark.parametrize("kwargs, message", [
    ({"survey": "hst_acs_f814w"}, "has no sky_levels"),
    ({"shear": (0.8, 0.8)}, r"\|g\| >= 1"),
    ({"neighbour_max_offset": 30.0}, r"keep it in \[0, 18.50\]"),
    ({"measure_band": "F814W"}, "has no band 'F814W'"),
    ({"n_objects_range": (0, 2)}, "n_objects_range"),
])
def test_bad_config_is_rejected_naming_the_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BlendSimConfig(**kwargs)


def test_processes_do_not_change_the_scenes(scenes):
    parallel = simulate_blends(4, scenes.config, seed=5, processes=2)
    np.testing.assert_array_equal(parallel.blend, scenes.blend)
    assert parallel.truth.tobytes() == scenes.truth.tobytes()


def test_quarter_turn_keeps_the_galaxies_and_negates_their_intrinsic_shapes(scenes):
    turned = simulate_blends(4, dataclasses.replace(scenes.config, quarter_turn=True), seed=5)
    np.testing.assert_array_equal(turned.n_objects, scenes.n_objects)
    np.testing.assert_allclose(turned.truth["flux"], scenes.truth["flux"])
    np.testing.assert_allclose(turned.truth["g1"], -scenes.truth["g1"], atol=1e-12)
    np.testing.assert_allclose(turned.truth["g2"], -scenes.truth["g2"], atol=1e-12)
    measured = np.isfinite(turned.truth["hsm_g1"]) & np.isfinite(scenes.truth["hsm_g1"])
    np.testing.assert_allclose(turned.truth["hsm_g1"][measured], -scenes.truth["hsm_g1"][measured], atol=0.02)


def test_split_keeps_scenes_and_their_truth_rows_together(scenes):
    first, rest = scenes.split(1)
    assert len(first) == 1 and len(rest) == 3
    assert len(first.truth) == scenes.n_objects[0] and np.all(rest.truth["scene"] >= 1)
    np.testing.assert_array_equal(rest.blend, scenes.blend[1:])
    assert first.noise_sigma.shape == (1, 6)
    np.testing.assert_allclose(first.noise_sigma[0] ** 2, LSST.sky_levels, rtol=1e-6)
    with pytest.raises(ValueError, match="n_first must be below the set's 4 scenes"):
        scenes.split(4)
