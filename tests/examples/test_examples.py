"""The examples' functions on reduced settings."""

import importlib.util
import pathlib

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # subprocesses, shipped weights or real fits

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"


def load_example(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_lensed_source_fit_keeps_a_resumable_chain_and_draws_a_corner_plot(
        tmp_path, galaxy_model_path, monkeypatch):
    example = load_example("lensed_source_fit")
    from lenstronomy_vae.lensing import lens_simulation as demo

    small = demo.LensSettings(num_pix=32, pixel_scale=0.08)
    monkeypatch.setattr(example, "simulate_lens", lambda seed: demo.simulate_lens(seed=seed, settings=small))
    settings = dict(model=galaxy_model_path, pso_iterations=5, walker_ratio=2, burn=1, progress=False)
    _, samples, names, _ = example.fit(tmp_path, steps=3, **settings)
    assert example.read_backend(tmp_path / "chain.h5").iteration == 3
    simulation, samples, names, _ = example.fit(tmp_path, steps=5, **settings)  # resumes: 2 more steps
    backend = example.read_backend(tmp_path / "chain.h5")
    assert backend.iteration == 5
    assert samples.shape == ((5 - 1) * backend.shape[0], len(names))
    assert np.all(np.isfinite(samples))
    path = example.corner_plot(simulation, samples, names, tmp_path / "corner.png")
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_fit_galaxy_from_fits_writes_reads_and_fits_a_simulated_galaxy(tmp_path):
    example = load_example("fit_galaxy_from_fits")
    # Parametric morphologies: the same galaxy with or without the optional COSMOS catalogue (fpfs).
    image_path, psf_path, sigma, truth = example.write_simulated_galaxy(tmp_path, seed=2, source="parametric")
    result, pixel_scale = example.fit_file(image_path, psf_path, sigma, tmp_path)
    assert pixel_scale == pytest.approx(0.03)
    assert result["kwargs"]["amp"] == pytest.approx(truth["flux"], rel=0.1)
    assert 0.8 < result["reduced_chi2"] < 1.3
    assert (tmp_path / "galaxy_fit.png").is_file()


def test_deblend_lsst_scene_recovers_the_separated_galaxies_with_the_shipped_networks(tmp_path):
    example = load_example("deblend_lsst_scene")
    scenes = example.simulate_scene(seed=4)
    _, after, rows = example.deblend(scenes, map_steps=10)
    # Objects 1 and 2 of this scene stand apart; 0 hides next to the bright 3: sep finds one source there, and
    # field mode adds 0 where the residual needs it.
    for row in rows:
        assert row["map_flux_i"] == pytest.approx(row["true_flux_i"], rel=0.1)
        assert np.hypot(*(np.subtract(row["map_e"], row["true_e"]))) < 0.06
    matched = [row["map_detection"] for row in rows if row["map_detection"] is not None]
    assert len(matched) == len(set(matched)) == len(after.galaxies)
    figure = example.scene_figure(scenes, after, rows)
    assert len(figure.get_axes()) == 3 + len(rows) and all(axis.images for axis in figure.get_axes())  # no empty panel
    assert example.plot(scenes, after, rows, tmp_path / "scene.png").read_bytes()[:4] == b"\x89PNG"


def test_regress_ellipticities_reads_calibrated_shapes(tmp_path):
    example = load_example("regress_ellipticities")
    truth, predicted, deblended = example.predict(40, seed=21)
    summary = example.summary(truth, predicted)
    # Divided by the shear response (0.54), the shapes are no longer shrunk: slope ~1 (1.06 on 200 scenes).
    for name in ("g1", "g2"):
        assert 0.7 < summary[name]["slope"] < 1.4 and summary[name]["robust_sigma"] < 0.4
    assert deblended.shape == (40, 2)
    assert example.plot(truth, predicted, deblended, tmp_path / "e.png").read_bytes()[:4] == b"\x89PNG"
