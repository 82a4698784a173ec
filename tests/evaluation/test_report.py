"""The side-by-side deblending report on tiny networks and a few scenes."""

import dataclasses

import numpy as np
import pytest

from lenstronomy_vae.evaluation.metrics import adaptive_shapes, cosine_similarities, flux_errors, ssim_scores
from lenstronomy_vae.evaluation.report import compare, image_metrics, regressor_shear_bias, summarise
from lenstronomy_vae.networks.deblender import Deblender
from lenstronomy_vae.networks.regressor import LatentRegressor
from lenstronomy_vae.sims.blends import simulate_blends


def test_the_truth_scores_perfectly_and_the_blend_does_not(lsst_scenes):
    metrics = image_metrics({"truth": lsst_scenes.target, "blend": lsst_scenes.blend}, lsst_scenes)
    truth = metrics["truth"]
    np.testing.assert_array_equal(truth["de"][np.isfinite(truth["de"])], 0.0)
    np.testing.assert_allclose(truth["flux_error"], 0.0, atol=1e-12)
    np.testing.assert_allclose(truth["ssim"], 1.0)
    np.testing.assert_allclose(truth["cosine"], 1.0)
    blended = lsst_scenes.n_objects > 1
    assert np.all(metrics["blend"]["flux_error"][blended, 3] > 0)  # neighbours add light


def test_image_metrics_are_the_metrics_functions_with_nan_rows_without_estimate(lsst_scenes):
    estimate = lsst_scenes.blend.astype(np.float64)
    estimate[::3] = np.nan  # no estimate for scenes 0, 3, 6, …
    metrics = image_metrics({"partial": estimate}, lsst_scenes)["partial"]
    missing = np.arange(len(lsst_scenes)) % 3 == 0
    for values in metrics.values():
        assert len(values) == len(lsst_scenes) and np.isnan(values[missing]).all()
    found, truth = lsst_scenes.blend[~missing], lsst_scenes.target[~missing]
    band = lsst_scenes.survey.band_index(lsst_scenes.config.measure_band)
    de = adaptive_shapes(found, band, lsst_scenes.pixel_scale) - adaptive_shapes(truth, band, lsst_scenes.pixel_scale)
    np.testing.assert_array_equal(metrics["de"][~missing], de)
    np.testing.assert_array_equal(metrics["flux_error"][~missing], flux_errors(found, truth))
    np.testing.assert_array_equal(metrics["ssim"][~missing], ssim_scores(found, truth, band))
    np.testing.assert_array_equal(metrics["cosine"][~missing], cosine_similarities(found, truth))
    assert summarise(metrics["de"])["n_failed"] >= missing.sum()


def test_compare_reports_every_method_and_the_regressor(lsst_vae, lsst_scenes):
    deblender = Deblender.from_vae(lsst_vae)
    regressor = LatentRegressor.from_encoder_model(deblender, seed=0)
    scenes, _ = lsst_scenes.split(6)
    shear_sets = [simulate_blends(4, dataclasses.replace(lsst_scenes.config, shear=(s, s), quarter_turn=turned),
                                  seed=9) for s, turned in ((0.02, False), (-0.02, False), (0.02, True), (-0.02, True))]
    report, per_scene = compare(scenes, deblender, regressor, shear_sets, map_scenes=2, map_steps=3)
    assert set(report["table"]) == {"no_deblending", "sep_segmentation", "vae_deblender", "vae_true_positions",
                                    "vae_map", "regressor"}
    assert report["table"]["vae_map"]["n"] == 2 and report["table"]["no_deblending"]["n"] == 6
    assert report["table_map_scenes"]["sep_segmentation"]["n"] == 2
    assert len(report["table"]["vae_deblender"]["mean_abs_flux_error_per_band"]) == 6
    assert report["shear_bias"]["n"] <= 4 and len(report["shear_bias"]["m"]) == 2
    assert per_scene["regressor"]["de"].shape == (6, 2)


def test_shear_sets_must_pair(lsst_vae, lsst_scenes):
    regressor = LatentRegressor.from_encoder_model(lsst_vae)
    plus = simulate_blends(2, dataclasses.replace(lsst_scenes.config, shear=(0.02, 0.0)), seed=1)
    unpaired = simulate_blends(2, dataclasses.replace(lsst_scenes.config, shear=(0.02, 0.0)), seed=1)
    with pytest.raises(ValueError, match=r"minus set does not pair .*expected \(-0.02, -0.0\)"):
        regressor_shear_bias(regressor, plus, unpaired, plus, plus)
