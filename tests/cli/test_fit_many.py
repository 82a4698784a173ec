"""fit-many: a table of lens cut-outs, resumable, the same on Dask workers as in this process."""

import json

import numpy as np
import pytest
from astropy.table import Table

from lenstronomy_vae.cli import main
from lenstronomy_vae.cli.fit_many import fit_many
from lenstronomy_vae.lensing.cutouts import read_lens_table, write_simulated_lenses
from lenstronomy_vae.lensing.lens_fit import FitSettings
from lenstronomy_vae.utils.engine import engine

BUDGET = FitSettings(pso_particles=10, pso_iterations=3, lm_iterations=2, walker_ratio=2, mcmc_burn=2, mcmc_run=3,
                     progress=False)


@pytest.fixture(scope="module")
def lens_table(tmp_path_factory):
    return write_simulated_lenses(4, tmp_path_factory.mktemp("lenses"), seed=3)


def stop_after(n):
    """A map that runs only the first ``n`` jobs, as a run killed after them."""
    def map_function(function, *iterables):
        for k, arguments in enumerate(zip(*iterables)):
            if k == n:
                return
            yield function(*arguments)
    return map_function


def test_a_stopped_run_resumes_without_fitting_anything_twice(lens_table, tmp_path, galaxy_model_path):
    table, fitted = fit_many(lens_table, tmp_path, model=galaxy_model_path, settings=BUDGET,
                             map_function=stop_after(2))
    assert fitted == 2 and list(table["name"]) == ["lens_0000", "lens_0001"]
    first = {path.name: path.stat().st_mtime_ns for path in (tmp_path / "lenses").glob("*.json")}
    table, fitted = fit_many(lens_table, tmp_path, model=galaxy_model_path, settings=BUDGET)
    assert fitted == 2 and list(table["name"]) == [f"lens_000{k}" for k in range(4)]
    assert all((tmp_path / "lenses" / name).stat().st_mtime_ns == mtime for name, mtime in first.items())
    assert Table.read(tmp_path / "results.ecsv")["theta_E"].unit == "arcsec"
    assert "true_theta_E" in table.colnames and (tmp_path / "lenses" / "lens_0003.png").exists()
    assert fit_many(lens_table, tmp_path, model=galaxy_model_path, settings=BUDGET)[1] == 0
    summary = json.loads((tmp_path / "lenses" / "lens_0002.json").read_text())
    assert summary["seed"] == 2 and summary["name"] == "lens_0002"


def test_a_lens_table_is_checked_row_by_row(lens_table, tmp_path):
    cutouts = read_lens_table(lens_table)
    assert [c.name for c in cutouts] == [f"lens_000{k}" for k in range(4)]
    assert cutouts[0].kwargs_psf["psf_type"] == "GAUSSIAN" and cutouts[0].start["theta_E"] == 1.0
    table = Table.read(lens_table)
    table["name"][1] = table["name"][0]
    table.write(lens_table.parent / "twice.ecsv", overwrite=True)
    with pytest.raises(ValueError, match=r"unique; repeated: \['lens_0000'\]"):
        read_lens_table(lens_table.parent / "twice.ecsv")
    table.remove_column("psf_fwhm")
    table.write(lens_table.parent / "no_psf.ecsv", overwrite=True)
    with pytest.raises(ValueError, match="psf or psf_fwhm"):
        read_lens_table(lens_table.parent / "no_psf.ecsv")


def test_the_command_fits_the_table_and_says_so(lens_table, tmp_path, galaxy_model_path, capsys):
    code = main(["fit-many", str(lens_table), "--out", str(tmp_path), "--model", galaxy_model_path, "--quiet",
                 "--pso-particles", "10", "--pso-iterations", "2", "--lm-iterations", "2", "--mcmc-burn", "2",
                 "--mcmc-run", "2"])
    assert code == 0 and "fitted 4 lens(es)" in capsys.readouterr().out
    assert main(["fit-many", str(lens_table), "--out", str(tmp_path), "--workers", "0"]) == 2


@pytest.mark.slow
def test_two_workers_give_the_serial_results(lens_table, tmp_path, galaxy_model_path):
    serial, _ = fit_many(lens_table, tmp_path / "serial", model=galaxy_model_path, settings=BUDGET)
    with engine(workers=2) as map_function:
        parallel, _ = fit_many(lens_table, tmp_path / "parallel", model=galaxy_model_path, settings=BUDGET,
                               map_function=map_function)
    for column in ("theta_E", "e1", "gamma2", "reduced_chi2"):
        np.testing.assert_allclose(parallel[column], serial[column], rtol=1e-9)


def test_too_few_pso_particles_for_the_warm_starts_is_a_clear_error(tmp_path, capsys):
    arguments = ["fit-many", str(tmp_path / "lenses.ecsv"), "--out", str(tmp_path / "out"), "--pso-particles", "3"]
    assert main(arguments) == 2
    assert "--pso-particles 3 cannot be shared among the fit's 2 warm starts" in capsys.readouterr().err
