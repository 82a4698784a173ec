"""The lenstronomy-vae command line on tiny inputs: exit codes, files written, their content, help, quiet TensorFlow."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from astropy.io import fits
from scipy.signal import fftconvolve

from lenstronomy_vae.cli import main
from lenstronomy_vae.lensing.profile import VAEProfile
from lenstronomy_vae.networks.model_files import weights_dir
from lenstronomy_vae.sims.galaxies import GalaxySet
from lenstronomy_vae.utils import tensorflow_logs

PIXEL_SCALE = 0.05
SHIPPED_MANIFEST = weights_dir() / "manifest.json"


@pytest.fixture
def galaxy_files(tmp_path, galaxy_model_path):
    """A noisy tiny-model galaxy with a WCS header (0.05″/px), its PSF, and its noise map as FITS."""
    profile = VAEProfile(galaxy_model_path)
    coordinates = (np.arange(24) - 11.5) * PIXEL_SCALE
    x, y = np.meshgrid(coordinates, coordinates)
    latents = {"z_0": 0.4, "z_1": -0.3, "z_2": 0.2, "z_3": 0.1}
    psf = np.outer(*2 * [np.exp(-0.5 * (np.arange(-3, 4) / 1.2) ** 2)])
    psf /= psf.sum()
    image = fftconvolve(profile.function(x, y, amp=2.0, **latents) * PIXEL_SCALE**2, psf, mode="same")
    image += np.random.default_rng(0).normal(0, 0.001, image.shape)
    header = fits.Header({"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CDELT1": -PIXEL_SCALE / 3600,
                          "CDELT2": PIXEL_SCALE / 3600, "CRPIX1": 12.5, "CRPIX2": 12.5, "CRVAL1": 150.0,
                          "CRVAL2": 2.0})
    paths = {name: tmp_path / f"{name}.fits" for name in ("image", "psf", "noise")}
    fits.PrimaryHDU(image, header=header).writeto(paths["image"])
    fits.PrimaryHDU(psf).writeto(paths["psf"])
    fits.PrimaryHDU(np.full(image.shape, 0.001)).writeto(paths["noise"])
    return paths


def test_fit_writes_parameters_and_figure(galaxy_files, galaxy_model_path, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["fit", str(galaxy_files["image"]), "--psf", str(galaxy_files["psf"]), "--noise-map",
                 str(galaxy_files["noise"]), "--model", galaxy_model_path, "--out", str(out)])
    assert code == 0
    result = json.loads((out / "fit.json").read_text())
    assert result["pixel_scale_arcsec"] == pytest.approx(PIXEL_SCALE)  # read from the WCS
    assert result["parameters"]["amp"] == pytest.approx(2.0, rel=0.05)
    assert result["reduced_chi2"] == pytest.approx(1.0, abs=0.3)
    assert set(result["parameters"]) == set(VAEProfile(galaxy_model_path).param_names)
    assert (out / "fit.png").read_bytes()[:4] == b"\x89PNG"
    assert "reduced χ²" in capsys.readouterr().out


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--noise", "0.001", "--pixel-scale", "0.05"], None),
        (["--noise", "0.001", "--noise-map", "NOISE"], "either as --noise SIGMA or as --noise-map FILE"),
        ([], "either as --noise SIGMA or as --noise-map FILE"),
        (["--noise", "-1"], "noise_map must be positive"),
        (["--noise", "0.001", "--hdu", "3"], "has 1 HDUs; HDU 3 does not exist"),
    ],
)
def test_fit_arguments(galaxy_files, galaxy_model_path, tmp_path, capsys, arguments, message):
    arguments = [str(galaxy_files["noise"]) if a == "NOISE" else a for a in arguments]
    code = main(["fit", str(galaxy_files["image"]), "--psf", str(galaxy_files["psf"]), "--model", galaxy_model_path,
                 "--out", str(tmp_path / "o"), "--max-iterations", "3", *arguments])
    if message is None:
        assert code == 0
    else:
        assert code == 2 and message in capsys.readouterr().err


def test_fit_reports_missing_files_and_images_without_pixel_scale(galaxy_files, tmp_path, capsys):
    assert main(["fit", str(tmp_path / "none.fits"), "--psf", str(galaxy_files["psf"]), "--noise", "1"]) == 2
    assert "no such FITS file" in capsys.readouterr().err
    assert main(["fit", str(galaxy_files["psf"]), "--psf", str(galaxy_files["psf"]), "--noise", "1"]) == 2
    assert "pass --pixel-scale ARCSEC" in capsys.readouterr().err
    (tmp_path / "text.fits").write_text("not fits")
    assert main(["fit", str(tmp_path / "text.fits"), "--psf", str(galaxy_files["psf"]), "--noise", "1"]) == 2
    assert "not a readable FITS file" in capsys.readouterr().err


@pytest.mark.skipif(not SHIPPED_MANIFEST.is_file(), reason="no shipped weights")
def test_models_lists_the_shipped_models_and_what_the_regressor_calibration_is(user_home, capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "hst64_large (default): vae, 64×64 px at 0.03″/px" in out
    assert "\nhst64: vae, 64×64 px at 0.03″/px" in out
    assert "lsst45: vae, 45×45 px at 0.2″/px, bands ['u', 'g', 'r', 'i', 'z', 'y']" in out
    assert ("σ(Δg1) 0.150 measured before calibration (not since); calibrated: g1, g2 divided by R = (0.536, 0.536), "
            "measured on 1000 galaxies at shear (0.05, 0.05) (uncalibrated m = -0.464 ± 0.021, -0.464 ± 0.020)") in out
    assert f"yours, in {user_home / 'models'}: none (training writes here)" in out
    assert main(["models", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert listing["default"] == "hst64_large" and "lsst45" in listing["models"] and listing["user_models"] == {}


@pytest.mark.parametrize("command", ["demo", "fit", "simulate", "simulate-blends", "train", "train-deblender",
                                     "train-regressor", "calibrate-regressor", "report", "deblend", "models"])
def test_every_command_has_a_description_and_shows_its_defaults(command, capsys):
    with pytest.raises(SystemExit) as exit_code:
        main([command, "--help"])
    out = capsys.readouterr().out
    assert exit_code.value.code == 0 and "--verbose" in out
    description = out.split("\n\n")[1]
    assert not description.startswith(("options:", "positional arguments:")), out
    if command != "models":
        assert "(default: " in out
    assert "(default: None)" not in out and "(default: False)" not in out


def test_help_gives_the_training_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    for default in ("(default: 40)", "(default: 64)", "(default: 0.001)", "(default: 16 32 64 128)", "(default: 5)",
                    "(default: runs/NAME)", "$LENSTRONOMY_VAE_HOME/models"):
        assert default in help_text


def test_startup_log_lines_of_tensorflow_are_held_back_and_the_rest_passed_on(capfd):
    with tensorflow_logs.without_tensorflow_log_lines():
        os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
                    b"I0000 00:00:1796031560.835336   20729 port.cc:153] oneDNN custom operations are on.\n"
                    b"E0000 00:00:1796031576.572022   20973 cuda_platform.cc:52] failed call to cuInit: (303)\n"
                    b"2025-09-17 14:44:05.157831: I external/local_xla/xla/tsl/cuda/cudart_stub.cc:32] no cuda\n"
                    b"a warning of someone else\n")
    assert capfd.readouterr().err == "a warning of someone else\n"


RUN_MAIN = "import sys; from lenstronomy_vae.cli import main; sys.exit(main())"


@pytest.mark.slow
def test_the_command_line_is_quiet_unless_verbose(tmp_path):
    """A new process, as `lenstronomy-vae` runs: no TensorFlow lines on stderr; all of them with --verbose."""
    environment = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    environment["LENSTRONOMY_VAE_HOME"] = str(tmp_path)
    quiet = subprocess.run([sys.executable, "-c", RUN_MAIN, "models"], env=environment, capture_output=True,
                           text=True, timeout=300)
    assert quiet.returncode == 0 and quiet.stderr == "" and "hst64" in quiet.stdout
    verbose = subprocess.run([sys.executable, "-c", RUN_MAIN, "models", "--verbose"], env=environment,
                             capture_output=True, text=True, timeout=300)
    assert verbose.returncode == 0 and "hst64" in verbose.stdout
    assert "] " in verbose.stderr and verbose.stderr.count("\n") >= 2  # TensorFlow's own log lines
    bad = subprocess.run([sys.executable, "-c", RUN_MAIN, "simulate", "--n", "2", "--survey", "lsst", "--out",
                          str(tmp_path / "x.h5")], env=environment, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
    assert bad.stderr.startswith("lenstronomy-vae simulate: error: survey 'lsst' has bands")


def test_simulate_then_train_ship_a_model_with_its_manifest(tmp_path, capsys):
    data = tmp_path / "galaxies.h5"
    assert main(["simulate", "--n", "12", "--source", "parametric", "--seed", "3", "--out", str(data), "--quiet"]) == 0
    assert "12 galaxies from source 'parametric'" in capsys.readouterr().out
    weights = tmp_path / "weights"
    code = main(["train", "--data", str(data), "--name", "tiny", "--weights-dir", str(weights), "--checkpoint-dir",
                 str(tmp_path / "run"), "--held-out", "3", "--validation", "3", "--epochs", "1", "--batch-size", "3",
                 "--latent-dim", "2", "--encoder-filters", "4", "4", "4", "4", "--decoder-filters", "4", "4", "4", "4",
                 "--dense-units", "8"])
    assert code == 0
    out = capsys.readouterr().out
    summary = json.loads(out[out.index('{\n  "held_out_galaxies"'):])  # after Keras's epoch lines
    manifest = json.loads((weights / "manifest.json").read_text())
    assert manifest["default"] is None and manifest["models"]["tiny"]["latent_dim"] == 2  # default: with --default
    assert manifest["models"]["tiny"]["metrics"]["median_ssim"] == pytest.approx(summary["median_ssim"])
    assert manifest["models"]["tiny"]["training_data"]["train"] == 6


def test_report_names_the_kind_of_network_it_needs(lsst_vae, tmp_path, capsys):
    vae_path = tmp_path / "vae.keras"
    lsst_vae.save(vae_path)
    data = tmp_path / "blends.h5"
    assert main(["simulate-blends", "--n", "2", "--seed", "3", "--out", str(data), "--quiet"]) == 0
    assert main(["report", "--data", str(data), "--deblender", str(vae_path), "--out", str(tmp_path / "r"),
                 "--quiet"]) == 2
    error = capsys.readouterr().err
    assert "holds a GalaxyVAE, not a lenstronomy_vae Deblender: pass a deblender" in error
    assert "Traceback" not in error


def test_simulate_refuses_an_unknown_survey(tmp_path, capsys):
    assert main(["simulate", "--n", "2", "--survey", "jwst", "--out", str(tmp_path / "x.h5"), "--quiet"]) == 2
    assert "jwst" in capsys.readouterr().err


def test_simulate_with_spiral_arms_records_them_and_refuses_a_bad_probability(tmp_path, capsys):
    data = tmp_path / "spirals.h5"
    assert main(["simulate", "--n", "2", "--source", "parametric", "--spiral-probability", "1", "--out", str(data),
                 "--quiet"]) == 0
    assert GalaxySet.load_hdf5(data).config.spiral_probability == 1.0
    assert main(["simulate", "--n", "2", "--spiral-probability", "1.5", "--out", str(tmp_path / "x.h5"),
                 "--quiet"]) == 2
    assert "spiral_probability must lie in [0, 1], got 1.5" in capsys.readouterr().err


def test_simulate_with_irregulars_records_them_and_refuses_a_bad_probability(tmp_path, capsys):
    data = tmp_path / "irregulars.h5"
    assert main(["simulate", "--n", "2", "--source", "parametric", "--irregular-probability", "0.5", "--out",
                 str(data), "--quiet"]) == 0
    assert GalaxySet.load_hdf5(data).config.irregular_probability == 0.5
    assert main(["simulate", "--n", "2", "--irregular-probability", "-0.1", "--out", str(tmp_path / "x.h5"),
                 "--quiet"]) == 2
    assert "irregular_probability must lie in [0, 1], got -0.1" in capsys.readouterr().err


@pytest.mark.slow
def test_blend_commands_train_ship_report_and_deblend(lsst_vae, tmp_path, capsys):
    """simulate-blends → train-deblender → train-regressor → report → deblend, on tiny inputs."""
    vae_path = tmp_path / "vae.keras"
    lsst_vae.save(vae_path)
    data = tmp_path / "blends.h5"
    assert main(["simulate-blends", "--n", "12", "--seed", "3", "--out", str(data), "--quiet"]) == 0
    weights = tmp_path / "weights"
    common = ["--data", str(data), "--weights-dir", str(weights), "--held-out", "4", "--validation", "4",
              "--epochs", "1", "--batch-size", "4"]
    assert main(["train-deblender", *common, "--vae", str(vae_path), "--name", "tiny_deblender",
                 "--checkpoint-dir", str(tmp_path / "run_d")]) == 0
    assert main(["train-regressor", *common, "--encoder", str(weights / "tiny_deblender.keras"),
                 "--name", "tiny_regressor", "--checkpoint-dir", str(tmp_path / "run_r")]) == 0
    manifest = json.loads((weights / "manifest.json").read_text())
    assert manifest["models"]["tiny_deblender"]["kind"] == "deblender"
    assert manifest["models"]["tiny_regressor"]["parent"].endswith("tiny_deblender.keras")
    assert manifest["default"] is None  # a deblender or regressor never becomes the default VAE
    assert manifest["models"]["tiny_deblender"]["metrics"]["held_out_scenes"] == 4

    out = tmp_path / "report"
    assert main(["report", "--data", str(data), "--deblender", str(weights / "tiny_deblender.keras"),
                 "--regressor", str(weights / "tiny_regressor.keras"), "--map-scenes", "1", "--map-steps", "2",
                 "--out", str(out), "--quiet"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["scenes"] == 12 and report["map_scenes"] == 1 and (out / "report.png").stat().st_size > 0
    assert "sep_segmentation" in capsys.readouterr().out

    from lenstronomy_vae.sims.blends import BlendSet

    scene = BlendSet.load_hdf5(data).blend[0]
    cube = tmp_path / "scene.fits"
    fits.PrimaryHDU(np.moveaxis(scene, -1, 0)).writeto(cube)
    deblended = tmp_path / "deblended"
    assert main(["deblend", str(cube), "--deblender", str(weights / "tiny_deblender.keras"),
                 "--regressor", str(weights / "tiny_regressor.keras"), "--out", str(deblended)]) == 0
    with fits.open(deblended / "deblended.fits") as hdus:
        n = len(hdus["GALAXIES"].data)
        assert n >= 1 and hdus["STAMPS"].data.shape == (n, 6, 45, 45) and hdus["MODEL"].data.shape == (6, 45, 45)
        np.testing.assert_allclose(hdus["MODEL"].data + hdus["RESIDUAL"].data, np.moveaxis(scene, -1, 0), atol=1e-2)
    table = (deblended / "galaxies.ecsv").read_text()
    assert "flux_i" in table and "redshift" in table

    assert main(["deblend", str(cube), "--deblender", str(vae_path), "--out", str(deblended)]) == 2
    assert "holds a GalaxyVAE, not a lenstronomy_vae Deblender" in capsys.readouterr().err
    fits.PrimaryHDU(np.zeros((3, 20, 20))).writeto(tmp_path / "three.fits")
    deblender = str(weights / "tiny_deblender.keras")
    assert main(["deblend", str(tmp_path / "three.fits"), "--deblender", deblender, "--out", str(deblended)]) == 2
    assert "has 3 bands but the deblender was trained on 6" in capsys.readouterr().err


def test_calibrate_regressor_refuses_a_network_that_does_not_respond_to_shear(lsst_vae, lsst_scenes, tmp_path,
                                                                             capsys):
    """An untrained regressor measures no usable response on four sheared sets: exit 2, and why."""
    import dataclasses

    from lenstronomy_vae.networks.regressor import LatentRegressor
    from lenstronomy_vae.sims.blends import simulate_blends

    paths = []
    for sign, turned in ((1, False), (-1, False), (1, True), (-1, True)):
        config = dataclasses.replace(lsst_scenes.config, shear=(0.05 * sign, 0.05 * sign), quarter_turn=turned)
        paths.append(tmp_path / f"shear_{sign}_{turned}.h5")
        simulate_blends(3, config, seed=2).save_hdf5(paths[-1])
    regressor_path = tmp_path / "regressor.keras"
    LatentRegressor.from_encoder_model(lsst_vae, seed=0).save(regressor_path)
    weights = tmp_path / "weights"
    assert main(["calibrate-regressor", "--regressor", str(regressor_path), "--sets", *map(str, paths),
                 "--weights-dir", str(weights)]) == 2
    assert "measured shear response" in capsys.readouterr().err and not weights.exists()
    assert main(["calibrate-regressor", "--regressor", str(regressor_path), "--sets", *map(str, paths[::-1]),
                 "--weights-dir", str(weights)]) == 2
    assert "does not pair with the plus set" in capsys.readouterr().err
