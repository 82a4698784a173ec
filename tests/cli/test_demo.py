"""The main job: a lens simulated, fitted with a 'VAE' source through FittingSequence, reported."""

import dataclasses
import json

import numpy as np
import pytest

from lenstronomy_vae.cli import main as cli_main
from lenstronomy_vae.cli.demo import run_demo
from lenstronomy_vae.lensing.lens_fit import FitSettings, fit_lens, lens_parameter_table
from lenstronomy_vae.lensing.lens_simulation import LensSettings, simulate_lens
from lenstronomy_vae.networks.galaxy_model import load_galaxy_model

SMALL_LENS = LensSettings(num_pix=40, pixel_scale=0.06, source_flux=60.0)
SHORT_FIT = FitSettings(pso_particles=30, pso_iterations=30, lm_iterations=20, walker_ratio=2,
                        mcmc_burn=40, mcmc_run=30, progress=False)


@pytest.fixture(scope="module")
def lens_with_vae_source(galaxy_model_path):
    """A lens whose source is the tiny model's own galaxy, so the model can describe it exactly."""
    model = load_galaxy_model(galaxy_model_path)
    stamp = model.decode(np.array([0.3, -0.5, 0.1, 0.8]))[0, ..., 0]
    return simulate_lens(seed=3, settings=SMALL_LENS, source_stamp=stamp, source_pixel_scale=model.pixel_scale)


def test_simulated_lens_is_reproducible_and_has_the_requested_flux(lens_with_vae_source, galaxy_model_path):
    again = simulate_lens(seed=3, settings=SMALL_LENS, source_stamp=lens_with_vae_source.source_stamp,
                          source_pixel_scale=0.05)
    np.testing.assert_array_equal(again.kwargs_data["image_data"], lens_with_vae_source.kwargs_data["image_data"])
    assert lens_with_vae_source.source_stamp.sum() == pytest.approx(SMALL_LENS.source_flux)


@pytest.mark.slow
def test_pso_lm_and_emcee_recover_the_einstein_radius_within_its_uncertainty(lens_with_vae_source, galaxy_model_path):
    fit = fit_lens(lens_with_vae_source, model=galaxy_model_path, settings=SHORT_FIT, seed=1)
    assert fit["samples"].shape[1] == len(fit["param_names"]) == 7 + 3 + 4
    theta_e = lens_parameter_table(lens_with_vae_source, fit)["theta_E"]
    assert abs(theta_e["median"] - theta_e["truth"]) < 3 * theta_e["sigma"] + 1e-3
    assert 0 < theta_e["sigma"] < 0.05


def test_run_demo_writes_figure_and_results_and_tells_the_story_of_the_fit(tmp_path, galaxy_model_path, capsys):
    quick = FitSettings(pso_particles=10, pso_iterations=3, lm_iterations=2, mcmc_burn=2, mcmc_run=2,
                        progress=False)
    results = run_demo(out_dir=tmp_path, seed=0, model=galaxy_model_path, fit_settings=quick,
                       lens_settings=SMALL_LENS)
    story = capsys.readouterr().out
    assert "'amp'" not in story and "z_0" not in story  # lenstronomy's PSO dictionaries stay quiet
    assert "MCMC selected" not in story and "Burn-in iterations" not in story  # and so do its MCMC settings
    for line in ("start 1 of 2: PSO, 5 particles × 3 iterations",
                 "start 2 of 2: lens search, PSO, 5 particles × 3 iterations, a SHAPELETS n_max 4 source",
                 "start 2 of 2: the VAE placed on that lens, PSO of its centre and scale, 5 particles × 3 iterations",
                 "Levenberg–Marquardt ('LM') on every parameter, ", "emcee from start ", "θ_E = ", "lensing a GalSim "):
        assert line in story
    stages = results["stages"]
    assert [stage["name"] for stage in stages] == ["PSO", "LM", "lens search", "placement", "LM", "emcee"]
    assert [stage.get("start") for stage in stages[:5]] == [1, 1, 2, 2, 2]
    assert stages[1]["chi2"] <= stages[0]["chi2"] and stages[4]["chi2"] <= stages[3]["chi2"]
    best = 1 if stages[1]["chi2"] <= stages[4]["chi2"] else 2  # emcee goes on from the better start
    assert stages[5]["start"] == best
    written = json.loads((tmp_path / "results.json").read_text())
    assert written["lens_parameters"]["theta_E"]["truth"] == SMALL_LENS.lens["theta_E"]
    assert written["reduced_chi2"] == pytest.approx(results["reduced_chi2"])
    assert (tmp_path / "fit.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_cli_reports_an_unknown_model_with_exit_code_2(tmp_path, capsys):
    assert cli_main(["demo", "--model", "no_such_model", "--out", str(tmp_path), "--quiet"]) == 2
    assert "unknown model 'no_such_model'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "change, message",
    [
        ({"image_data": np.full((4, 4), np.nan)}, r"16 NaN or infinite pixel\(s\) \(first at row, column \(0, 0\)\)"),
        ({"image_data": np.zeros(4)}, r"must be a 2-D image; got shape \(4,\)"),
        ({"background_rms": 0.0}, "background_rms must be positive; got 0.0"),
        ({"noise_map": -np.ones((4, 4))}, "noise_map must be positive"),
    ],
)
def test_fit_refuses_bad_data_with_a_message_naming_it(lens_with_vae_source, galaxy_model_path, change, message):
    bad = dataclasses.replace(lens_with_vae_source, kwargs_data={**lens_with_vae_source.kwargs_data,
                                                                "image_data": np.zeros((4, 4)), **change})
    with pytest.raises(ValueError, match=message):
        fit_lens(bad, model=galaxy_model_path, settings=SHORT_FIT)
