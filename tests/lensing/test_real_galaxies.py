"""benchmarks/real_galaxies.py on real COSMOS stamps (../shared), with tiny fit budgets; skipped without the data."""

import importlib.util
import json
import math
import pathlib

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
COSMOS = SHARED / "data" / "cosmos"

pytestmark = [pytest.mark.skipif(not COSMOS.is_dir(), reason=f"{COSMOS} absent (real COSMOS galaxies)"),
              pytest.mark.slow]  # real fits

# Two of the smaller stamps (34 and 42 px): a compact bright galaxy and a fainter one.
STAMPS = [22, 12]
LENSED_SOURCE = 1  # mag 23.7, compact: a ring inside a small field


def _load_script():
    spec = importlib.util.spec_from_file_location("real_galaxies", REPO / "benchmarks" / "real_galaxies.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def script():
    return _load_script()


@pytest.fixture(scope="module")
def galaxy_run(script, tmp_path_factory):
    out = tmp_path_factory.mktemp("real_galaxies")
    budget = script.Budget(vae_lm_iterations=15, vae_restarts=1, vae_pso_particles=8, vae_pso_iterations=4,
                           sersic_pso_particles=12, sersic_pso_iterations=10, sersic_simplex_iterations=150,
                           shapelets_pso_particles=4, shapelets_pso_iterations=3, shapelets_simplex_iterations=15,
                           floor_lm_iterations=5, floor_simplex_iterations=50)
    results = script.run_galaxies(COSMOS, STAMPS, out, budget, seed=0, figure_galaxies=2)
    return out, results


@pytest.fixture(scope="module")
def lensed_run(script, tmp_path_factory):
    out = tmp_path_factory.mktemp("lensed")
    budget = script.LensedBudget(lens=script.LensSettings(num_pix=32, pixel_scale=0.08), source_size=48,
                                 pso_particles=12, pso_iterations=8, lm_iterations=6, simplex_iterations=150)
    results = script.run_lensed(COSMOS, [LENSED_SOURCE], out, budget, seed=0, figure_galaxies=1)
    return out, results


def test_stamps_get_an_odd_square_psf_the_catalogue_noise_and_a_bounded_size(script):
    stamps = script.load_stamps(COSMOS, [20, 25], max_size=64)
    big, small = stamps
    assert (big.original_size, big.image.shape) == (190, (64, 64))
    assert small.image.shape == (small.original_size,) * 2
    for stamp in stamps:
        assert stamp.psf.shape[0] == stamp.psf.shape[1] and stamp.psf.shape[0] % 2 == 1
        assert stamp.psf.sum() == pytest.approx(1.0)
        centre = stamp.psf.shape[0] // 2
        assert np.argmax(stamp.psf) == centre * stamp.psf.shape[0] + centre
        assert 1e-3 < stamp.noise_sigma < 1e-2  # e-/s per 0.03″ pixel in COSMOS F814W


def test_correlated_noise_has_the_catalogue_variance_and_drizzle_correlation(script):
    noise = script.correlated_noise(COSMOS, (96, 96), 0.03, 4e-6, seed=1)
    assert noise.var() == pytest.approx(4e-6, rel=0.15)
    neighbour = np.mean(noise[:, 1:] * noise[:, :-1]) / noise.var()
    assert 0.35 < neighbour < 0.6


def test_every_model_fits_real_stamps_with_finite_chi2_and_the_best_near_one(galaxy_run, script):
    _, results = galaxy_run
    assert [row["index"] for row in results["galaxies"]] == STAMPS
    for row in results["galaxies"]:
        entries = row["models"]
        assert set(entries) == set(script.MODELS)
        for entry in entries.values():
            assert math.isfinite(entry["reduced_chi2"]) and entry["reduced_chi2"] > 0
            assert entry["seconds"] > 0
            # A perfect model of the family scores at most ~1 per pixel on correlated noise.
            assert 0 < entry["floor"] < 1.2
        # Models with about as many parameters as the VAE (n_max = 20 has 231 and fits noise).
        best = min(entries[name]["reduced_chi2"] for name in ("VAE", "SERSIC_ELLIPSE", "SHAPELETS n_max=7"))
        assert 0.6 < best < 2.0
        assert entries["SHAPELETS n_max=20"]["reduced_chi2"] < entries["SHAPELETS n_max=7"]["reduced_chi2"]
        assert set(entries["VAE"]["starts"]) == {"mean galaxy → LM", "PSO (centre, scale) → LM"}
        assert entries["VAE"]["reduced_chi2"] == pytest.approx(
            min(start["reduced_chi2"] for start in entries["VAE"]["starts"].values()))


def test_galaxy_run_writes_json_table_and_figure(galaxy_run, script):
    out, results = galaxy_run
    written = json.loads((out / "real_galaxies.json").read_text())
    assert {"summary", "target", "galaxies", "budget", "model"} <= written.keys()
    assert set(written["summary"]) == set(script.MODELS)
    for row in written["summary"].values():
        assert {"median_reduced_chi2", "median_seconds", "median_floor", "median_excess"} <= row.keys()
    checks = {"vae_below_sersic", "vae_over_shapelets20", "vae_within_10_percent_of_shapelets20"}
    assert set(written["target"]) == checks | {"floor_corrected"}
    assert set(written["target"]["floor_corrected"]) == checks
    assert (out / "real_galaxies.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_lensed_real_galaxy_gives_lens_parameter_errors_per_source_model(lensed_run, script):
    out, results = lensed_run
    written = json.loads((out / "lensed.json").read_text())
    assert {"summary", "truth", "galaxies", "budget"} <= written.keys()
    assert set(written["summary"]) == set(script.LENSED_MODELS)
    (row,) = written["galaxies"]
    assert row["index"] == LENSED_SOURCE
    for name in script.LENSED_MODELS:
        errors = row["models"][name]["error"]
        assert set(errors) == set(script.LENS_PARAMS)
        assert all(math.isfinite(value) for value in errors.values())
        assert abs(errors["theta_E"]) < 0.3  # arcsec; a tiny budget, so only a sanity bound
        assert set(written["summary"][name]["parameters"]["theta_E"]) == {"median_error", "scatter",
                                                                         "median_abs_error"}
    assert (out / "lensed.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_script_skips_cleanly_without_the_shared_folder(script, tmp_path, capsys):
    assert script.main(["--shared", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")]) == 0
    assert "skipping" in capsys.readouterr().out
    assert not (tmp_path / "out").exists()
