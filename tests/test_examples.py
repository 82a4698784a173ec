"""The examples' functions on reduced settings."""

import importlib.util
import pathlib

import numpy as np
import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"


def load_example(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_lensed_source_fit_keeps_a_resumable_chain_and_draws_a_corner_plot(
        tmp_path, galaxy_model_path, monkeypatch):
    example = load_example("lensed_source_fit")
    from lenstronomy_vae import demo

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
