"""Galaxy stamp simulation: reproducibility, flux and noise levels, storage, fallbacks, errors."""

import dataclasses
import os

import galsim
import h5py
import numpy as np
import pytest

from lenstronomy_vae.sims import catalog, rendering
from lenstronomy_vae.sims.galaxies import TRUTH_DTYPE, GalaxySet, GalaxySimConfig, simulate_galaxies
from lenstronomy_vae.sims.morphology import lopsided, spiral_arm_positions
from lenstronomy_vae.sims.surveys import HST_ACS_F814W, SURVEYS

needs_cosmos = pytest.mark.skipif(
    catalog.cosmos_catalog_dir() is None, reason="fpfs (COSMOS catalog) not installed"
)

# Every disk galaxy gets knots, so the knot code runs in each test that uses this config.
KNOTTY = GalaxySimConfig(knot_probability=1.0)


def assert_same_truth(actual, expected):
    """Truth tables equal field by field (a structured comparison would call NaN ≠ NaN)."""
    assert actual.dtype == expected.dtype
    for field in expected.dtype.names:  # parametric galaxies have no redshift: NaN
        np.testing.assert_array_equal(actual[field], expected[field], err_msg=field)


@pytest.fixture(scope="module")
def galaxies():
    return simulate_galaxies(6, KNOTTY, seed=11)


@pytest.fixture
def without_fpfs(monkeypatch):
    monkeypatch.setattr(catalog, "cosmos_catalog_dir", lambda: None)


def _arrays(galaxy_set):
    return [galaxy_set.intrinsic, galaxy_set.convolved, galaxy_set.observed, galaxy_set.noise_sigma]


def test_same_seed_gives_identical_galaxies(galaxies):
    again = simulate_galaxies(6, KNOTTY, seed=11)
    for first, second in zip(_arrays(galaxies), _arrays(again)):
        np.testing.assert_array_equal(first, second)
    assert_same_truth(galaxies.truth, again.truth)


def test_different_seeds_give_different_galaxies(galaxies):
    other = simulate_galaxies(6, KNOTTY, seed=12)
    assert not np.allclose(galaxies.intrinsic, other.intrinsic)
    assert not np.array_equal(galaxies.truth["flux"], other.truth["flux"])


def test_two_processes_reproduce_one_process(galaxies):
    forked = simulate_galaxies(6, KNOTTY, seed=11, processes=2)
    for first, second in zip(_arrays(galaxies), _arrays(forked)):
        np.testing.assert_array_equal(first, second)
    assert_same_truth(galaxies.truth, forked.truth)


def test_images_are_float32_channel_last_stamps(galaxies):
    size = HST_ACS_F814W.stamp_size
    for images in _arrays(galaxies)[:3]:
        assert images.dtype == np.float32 and images.shape == (6, size, size, 1)
    assert galaxies.bands == ("F814W",) and galaxies.pixel_scale == 0.03


@pytest.mark.parametrize("source", ["auto", "parametric"])
def test_noiseless_flux_matches_truth_for_galaxies_inside_the_stamp(source):
    config = dataclasses.replace(KNOTTY, source=source, min_flux_in_stamp=0.99)
    contained = simulate_galaxies(8, config, seed=3)
    flux = contained.truth["flux"]
    np.testing.assert_allclose(contained.convolved.sum(axis=(1, 2, 3)), flux, rtol=0.02)
    np.testing.assert_allclose(contained.intrinsic.sum(axis=(1, 2, 3)), flux, rtol=0.02)


def test_observed_minus_convolved_is_noise_of_the_survey_sigma(galaxies):
    sigma = HST_ACS_F814W.noise_sigma[0]
    residual = galaxies.observed - galaxies.convolved
    assert abs(residual.std() / sigma - 1) < 0.03
    assert abs(residual.mean()) < 0.05 * sigma
    np.testing.assert_allclose(galaxies.noise_sigma, sigma)


def test_truth_is_consistent_with_the_images(galaxies):
    truth = galaxies.truth
    sigma = HST_ACS_F814W.noise_sigma[0]
    convolved = galaxies.convolved.astype(float)
    np.testing.assert_allclose(truth["snr"], np.sqrt((convolved**2).sum(axis=(1, 2, 3))) / sigma, rtol=1e-4)
    np.testing.assert_allclose(truth["magnitude"], HST_ACS_F814W.flux_to_mag(truth["flux"]))
    assert np.all(np.hypot(truth["g1"], truth["g2"]) < 1)
    assert np.all((truth["hlr"] > 0.02) & (truth["hlr"] < 0.9))
    assert np.all(np.abs(truth[["dx", "dy"]].tolist()) <= KNOTTY.max_offset)


def test_render_matches_galsim_for_a_cuspy_bulge_plus_disk():
    galaxy = (galsim.DeVaucouleurs(half_light_radius=0.03, flux=3.0).shear(q=0.7, beta=0.3 * galsim.radians)
              + galsim.Exponential(half_light_radius=0.3, flux=7.0).shear(q=0.4, beta=1.0 * galsim.radians))
    offset = (0.3, -0.2)
    intrinsic, convolved = rendering.render(galaxy, None, HST_ACS_F814W, "F814W", offset)
    size, scale = HST_ACS_F814W.stamp_size, HST_ACS_F814W.pixel_scale
    exact = galaxy.drawImage(nx=size, ny=size, scale=scale, offset=offset, method="real_space").array
    np.testing.assert_allclose(intrinsic, exact, atol=2e-3 * exact.max())
    # The stamp-wide kernel is normalised to unit sum; GalSim's PSF keeps its far wings.
    psf = HST_ACS_F814W.psf()
    fine = size * rendering.SUPERSAMPLING + 1
    kernel_sum = psf.drawImage(nx=fine, ny=fine, scale=scale / rendering.SUPERSAMPLING, method="no_pixel").array.sum()
    reference = galsim.Convolve(galaxy, psf).drawImage(nx=size, ny=size, scale=scale, offset=offset).array / kernel_sum
    np.testing.assert_allclose(convolved, reference, atol=3e-3 * reference.max())


def test_hdf5_round_trip_restores_arrays_and_config_and_leaves_no_temporary(galaxies, tmp_path):
    path = tmp_path / "set.h5"
    galaxies.save_hdf5(path)
    loaded = GalaxySet.load_hdf5(path)
    assert os.listdir(tmp_path) == ["set.h5"]
    assert loaded.config == galaxies.config and loaded.seed == galaxies.seed
    for first, second in zip(_arrays(galaxies), _arrays(loaded)):
        np.testing.assert_array_equal(first, second)
    assert_same_truth(loaded.truth, galaxies.truth)
    assert loaded.truth.dtype == TRUTH_DTYPE


def test_loading_a_foreign_hdf5_file_says_what_is_wrong(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(ValueError, match="not a GalaxySet file"):
        GalaxySet.load_hdf5(path)


def test_split_gives_disjoint_parts_in_order(galaxies):
    first, rest = galaxies.split(2)
    assert (len(first), len(rest)) == (2, 4)
    np.testing.assert_array_equal(rest.observed, galaxies.observed[2:])
    assert first.config == galaxies.config
    with pytest.raises(ValueError, match=r"n_first must be an integer in \[1, 5\]"):
        galaxies.split(6)


@needs_cosmos
def test_cosmos_galaxies_are_distinct_catalog_rows_with_redshifts(galaxies):
    assert galaxies.config.source == "cosmos"
    index = galaxies.truth["index"]
    assert len(np.unique(index)) == len(index) and np.all(index >= 0)
    assert np.all(np.isfinite(galaxies.truth["redshift"]))
    assert np.all(np.isin(index, catalog.cosmos_selection(KNOTTY)))


def test_parametric_fallback_when_forced():
    config = GalaxySimConfig(source="parametric", mag_range=(22.0, 24.0), knot_probability=1.0)
    fallback = simulate_galaxies(4, config, seed=5)
    assert fallback.config.source == "parametric"
    assert fallback.truth["has_knots"].all()  # every fallback galaxy has a disk
    assert np.all(fallback.truth["index"] == -1) and np.all(np.isnan(fallback.truth["redshift"]))
    assert np.all((fallback.truth["magnitude"] >= 22.0) & (fallback.truth["magnitude"] <= 24.0))
    assert np.all(np.hypot(fallback.truth["g1"], fallback.truth["g2"]) < 1)


def test_knot_probability_zero_gives_smooth_galaxies():
    assert not simulate_galaxies(3, GalaxySimConfig(knot_probability=0.0), seed=1).truth["has_knots"].any()


def test_spiral_arm_positions_follow_their_arms_and_the_disk_light():
    rng = np.random.default_rng(3)
    hlr, n_arms, pitch = 0.4, 3, 0.3
    x, y = spiral_arm_positions(rng, 4000, hlr, n_arms, pitch).T
    radius = np.hypot(x, y)
    assert np.median(radius) == pytest.approx(hlr, rel=0.05)  # half the knots inside the disk's hlr
    # Unwound along the arms, the angles fall on n_arms directions; random angles do not.
    unwound = np.arctan2(y, x) - np.log(radius / (hlr / 1.678)) / np.tan(pitch)
    assert np.abs(np.mean(np.exp(1j * n_arms * unwound))) > 0.8
    assert np.abs(np.mean(np.exp(1j * n_arms * rng.uniform(0, 2 * np.pi, 4000)))) < 0.1


def test_spiral_knots_move_the_light_not_the_flux():
    knotty = GalaxySimConfig(source="parametric", knot_probability=1.0)
    scattered = simulate_galaxies(3, knotty, seed=4)
    spiral = simulate_galaxies(3, dataclasses.replace(knotty, spiral_probability=1.0), seed=4)
    np.testing.assert_allclose(spiral.truth["flux"], scattered.truth["flux"])
    np.testing.assert_allclose(spiral.intrinsic.sum(axis=(1, 2, 3)), scattered.intrinsic.sum(axis=(1, 2, 3)),
                               rtol=0.02)
    assert not np.allclose(spiral.intrinsic, scattered.intrinsic)
    again = simulate_galaxies(3, dataclasses.replace(knotty, spiral_probability=1.0), seed=4)
    np.testing.assert_array_equal(again.intrinsic, spiral.intrinsic)


def test_lopsided_knots_move_together_by_a_fraction_of_the_hlr():
    rng = np.random.default_rng(8)
    positions = rng.normal(0.0, 0.1, (50, 2))
    shifts = [np.mean(lopsided(positions, rng, 0.4, (0.3, 1.0)) - positions, axis=0) for _ in range(400)]
    lengths = np.hypot(*np.transpose(shifts))
    assert 0.12 <= lengths.min() and lengths.max() <= 0.4  # 0.3-1 times the hlr
    assert np.abs(np.mean(np.exp(1j * np.arctan2(*np.transpose(shifts)[::-1])))) < 0.15  # in any direction
    moved = lopsided(positions, np.random.default_rng(0), 0.4, (0.3, 1.0)) - positions
    np.testing.assert_allclose(moved, moved[0] + np.zeros_like(moved))  # one shift for all knots


def test_irregular_galaxies_have_brighter_off_centre_knots_and_keep_their_flux():
    knotty = GalaxySimConfig(source="parametric", knot_probability=1.0, max_offset=0.0, random_rotation=False)
    regular = simulate_galaxies(6, knotty, seed=4)
    irregular = simulate_galaxies(6, dataclasses.replace(knotty, irregular_probability=1.0), seed=4)
    np.testing.assert_allclose(irregular.truth["flux"], regular.truth["flux"])
    np.testing.assert_allclose(irregular.intrinsic.sum(axis=(1, 2, 3)), regular.intrinsic.sum(axis=(1, 2, 3)),
                               rtol=0.03)

    def centroid_offset(stamps):  # light centroid's distance from the stamp centre [pixels]
        y, x = np.indices(stamps.shape[1:3]) - (stamps.shape[1] - 1) / 2
        light = stamps[..., 0] / stamps.sum(axis=(1, 2, 3))[:, None, None]
        return np.hypot((light * x).sum(axis=(1, 2)), (light * y).sum(axis=(1, 2)))

    assert np.median(centroid_offset(irregular.intrinsic)) > 3 * np.median(centroid_offset(regular.intrinsic))
    again = simulate_galaxies(6, dataclasses.replace(knotty, irregular_probability=1.0), seed=4)
    np.testing.assert_array_equal(again.intrinsic, irregular.intrinsic)
    spirals = dataclasses.replace(knotty, spiral_probability=1.0)  # arms take precedence: no irregular spirals
    np.testing.assert_array_equal(simulate_galaxies(2, dataclasses.replace(spirals, irregular_probability=1.0),
                                                    seed=4).intrinsic, simulate_galaxies(2, spirals, seed=4).intrinsic)


def test_without_fpfs_auto_falls_back_and_cosmos_says_how_to_install(without_fpfs):
    assert simulate_galaxies(1, GalaxySimConfig(), seed=0).config.source == "parametric"
    with pytest.raises(RuntimeError, match="pip install fpfs --no-deps"):
        simulate_galaxies(1, GalaxySimConfig(source="cosmos"), seed=0)


def test_config_dict_round_trip():
    config = GalaxySimConfig(source="parametric", n_knots_range=(3, 9), max_offset=1.0)
    assert GalaxySimConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown GalaxySimConfig fields"):
        GalaxySimConfig.from_dict({**config.to_dict(), "pixel_scale": 0.03})


@pytest.mark.parametrize("n", [0, -3, 2.5, True])
def test_bad_galaxy_count_is_rejected(n):
    with pytest.raises(ValueError, match="n must be a positive integer"):
        simulate_galaxies(n, GalaxySimConfig(), seed=0)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"survey": "euclid"}, r"unknown survey 'euclid'; known surveys: \['hst_acs_f814w', 'lsst'\]"),
        ({"source": "real"}, r"unknown source 'real'; choose one of \('auto', 'cosmos', 'parametric'\)"),
        ({"mag_range": (25.0, 20.0)}, "mag_range must be"),
        ({"hlr_range": (-0.1, 0.5)}, "hlr_range must be"),
        ({"knot_probability": 1.5}, r"knot_probability must lie in \[0, 1\]"),
        ({"max_offset": 40.0}, "max_offset must lie in"),
        ({"knot_fwhm_range": (0.0, 0.05)}, "knot_fwhm_range must be positive"),
        ({"spiral_probability": -0.1}, r"spiral_probability must lie in \[0, 1\]"),
        ({"n_arms_range": (0, 2)}, "n_arms_range must be"),
        ({"arm_knots_range": (80, 40)}, "arm_knots_range must be"),
        ({"arm_pitch_range": (0.0, 0.5)}, r"arm_pitch_range must lie inside \(0, π/2\)"),
        ({"irregular_probability": 2.0}, r"irregular_probability must lie in \[0, 1\]"),
        ({"irregular_flux_fraction_range": (0.5, 1.5)}, "irregular_flux_fraction_range must be"),
        ({"irregular_shift_range": (-0.5, 1.0)}, "irregular_shift_range must be"),
    ],
)
def test_bad_config_is_rejected_with_the_valid_choices(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GalaxySimConfig(**kwargs)


def test_bad_seed_and_processes_are_rejected():
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        simulate_galaxies(1, seed=-1)
    with pytest.raises(ValueError, match="processes must be a positive integer"):
        simulate_galaxies(1, seed=0, processes=0)


def test_survey_psf_magnitudes_and_band_errors():
    survey = SURVEYS["hst_acs_f814w"]
    assert survey.psf().flux == pytest.approx(1.0)
    assert survey.psf("F814W").calculateFWHM() == pytest.approx(0.11, abs=0.01)
    assert survey.flux_to_mag(survey.mag_to_flux(24.0)) == pytest.approx(24.0)
    assert survey.mag_to_flux(survey.zero_points[0]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match=r"has no band 'r'; its bands are \('F814W',\)"):
        survey.psf("r")
    with pytest.raises(ValueError, match="give one per band"):
        dataclasses.replace(survey, noise_sigma=(0.1, 0.2))
