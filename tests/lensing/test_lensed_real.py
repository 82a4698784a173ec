"""benchmarks/lensed_real.py: the fitted source's flux on the true source's pixels of light; the true-source row."""

import importlib.util
import pathlib

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("lensed_real", REPO / "benchmarks" / "lensed_real.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def interpol_source(stamp, scale, truth):
    """The stamp as lensed_image places it: kwargs_model and kwargs_source of an INTERPOL source."""
    return ({"source_light_model_list": ["INTERPOL"]},
            [{"image": stamp / scale**2, "scale": scale, "center_x": truth["source_x"],
              "center_y": truth["source_y"], "phi_G": 0.0, "amp": 1.0}])


def test_footprint_holds_all_of_the_truths_light_where_lensed_image_puts_it(script):
    scale, truth = 0.03, {"source_x": 0.07, "source_y": -0.02}
    stamp = np.zeros((21, 21))
    stamp[4:7, 11:15] = np.arange(1.0, 13.0).reshape(3, 4)  # off centre, not symmetric: rows are y, columns x
    stamp /= stamp.sum()
    kwargs_model, kwargs_source = interpol_source(stamp, scale, truth)
    footprint = script.truth_footprint(stamp, scale, truth)
    assert len(footprint[0]) == 12
    assert script.source_flux_in(kwargs_model, kwargs_source, *footprint) == pytest.approx(1.0, abs=1e-6)
    # The same light one pixel along x is partly outside the footprint: the placement is checked.
    shifted = interpol_source(np.roll(stamp, 1, axis=1), scale, truth)[1]
    moved_out = stamp[:, 14].sum()  # the last column of the light, now beyond the footprint
    assert script.source_flux_in(kwargs_model, shifted, *footprint) == pytest.approx(1.0 - moved_out, abs=1e-6)
    transposed = interpol_source(stamp.T.copy(), scale, truth)[1]
    assert script.source_flux_in(kwargs_model, transposed, *footprint) < 0.05


def test_true_source_recovers_the_lens_and_the_flux_from_noise_free_data(script):
    settings = script.Settings(pso_particles=30, pso_iterations=30, simplex_iterations=1000)
    y, x = np.mgrid[-15:16, -15:16].astype(float)
    stamp = np.exp(-((x - 2) ** 2 + (y / 0.6) ** 2) / 32) + 0.3 * np.exp(-((x + 4) ** 2 + (y - 3) ** 2) / 2)
    truth = script.draw_truth(np.random.default_rng(3))
    clean = script.lensed_image(stamp / stamp.sum(), 0.03, truth, settings)
    observation = script.observe(clean, 100.0, settings, np.random.default_rng(1))
    observation.kwargs_data["image_data"] = clean  # no noise; σ as at SNR 100
    source = script.true_source(stamp, 0.03, settings)
    fit = script.fit_observation(observation, truth, [source], seed=0)[script.TRUE_SOURCE]
    assert abs(fit["error"]["theta_E"]) < 0.002  # arcsec
    assert fit["reduced_chi2"] < 0.01  # σ² units; the 3 × 3 against 5 × 5 supersampling alone is ~1e-6
    assert fit["source_flux"] == pytest.approx(1.0, rel=0.01)
    assert fit["free_parameters"] == 5 + 2 + 2 + 1  # SIE, SHEAR, the source's centre and amplitude
