"""``lenstronomy-vae fit`` on tiny FITS files: diagnostics in fit.json and on the terminal, real-data inputs."""

import json

import numpy as np
import pytest
from astropy.io import fits
from scipy.signal import fftconvolve

from lenstronomy_vae.cli import main
from lenstronomy_vae.lensing.profile import VAEProfile

PIXEL_SCALE = 0.05  # arcsec per pixel
NOISE = 0.001  # per-pixel σ, image units
PSF = np.outer(*2 * [np.exp(-0.5 * (np.arange(-5, 6) / 1.2) ** 2)])


def galaxy(model_path, shape=(24, 24), band=None):
    """A tiny-model galaxy of total flux 2, PSF-convolved, with Gaussian noise of σ NOISE."""
    rows, columns = shape
    x, y = np.meshgrid((np.arange(columns) - (columns - 1) / 2) * PIXEL_SCALE,
                       (np.arange(rows) - (rows - 1) / 2) * PIXEL_SCALE)
    latents = {"z_0": 0.4, "z_1": -0.3, "z_2": 0.2, "z_3": 0.1}
    surface_brightness = VAEProfile(model_path, band=band).function(x, y, amp=2.0, **latents)
    image = fftconvolve(surface_brightness * PIXEL_SCALE**2, PSF / PSF.sum(), mode="same")
    return image + np.random.default_rng(0).normal(0, NOISE, image.shape)


def write(path, *arrays):
    """FITS file with the arrays as its HDUs (the first one primary); returns its path as a string."""
    fits.HDUList([fits.PrimaryHDU(arrays[0]), *(fits.ImageHDU(a) for a in arrays[1:])]).writeto(path)
    return str(path)


@pytest.fixture
def files(tmp_path, galaxy_model_path):
    """Image (no WCS: the pixel scale is given), PSF and noise map of a tiny-model galaxy."""
    image = galaxy(galaxy_model_path)
    return {"image": write(tmp_path / "image.fits", image), "psf": write(tmp_path / "psf.fits", PSF),
            "noise": write(tmp_path / "noise.fits", np.full(image.shape, NOISE)), "array": image}


def run_fit(files, model, tmp_path, *options, image=None, psf=None):
    """Exit code and fit.json (None on failure) of `fit` with --noise NOISE, unless options give the noise."""
    noise = [] if {"--noise", "--noise-map"} & set(options) else ["--noise", str(NOISE)]
    out = tmp_path / "out"
    code = main(["fit", image or files["image"], "--psf", psf or files["psf"], "--pixel-scale", str(PIXEL_SCALE),
                 "--model", model, "--out", str(out), *noise, *options])
    return code, json.loads((out / "fit.json").read_text()) if code == 0 else None


def test_fit_json_carries_convergence_bounds_restarts_and_warnings(files, galaxy_model_path, tmp_path, capsys):
    code, result = run_fit(files, galaxy_model_path, tmp_path, "--restarts", "2")
    assert code == 0
    assert isinstance(result["converged"], bool) and result["at_bounds"] == []
    # 'LM' decides convergence; its verdict is written and, when negative, warned.
    lm_warnings = [w for w in result["warnings"] if w.startswith("'LM'")]
    assert result["warnings"] == lm_warnings and len(lm_warnings) == (0 if result["converged"] else 1)
    assert result["restarts"]["ran"] == 2 and len(result["restarts"]["chi2"]) == 3
    assert result["parameters"]["amp"] == pytest.approx(2.0, rel=0.05)
    assert result["stamp_flux"] == pytest.approx(2.0, rel=0.05) and result["pixels"] == 24 * 24
    output = capsys.readouterr()
    assert f"best of 3 starts: start {result['restarts']['winner']}" in output.out and "converged" in output.out
    assert output.err.count("warning:") == len(result["warnings"])


def test_warnings_are_printed_and_written(files, galaxy_model_path, tmp_path, capsys):
    sky = write(tmp_path / "sky.fits", files["array"][6:18, 6:18] + 0.01)
    code, result = run_fit(files, galaxy_model_path, tmp_path, "--max-iterations", "2", image=sky)
    assert code == 0 and result["converged"] is False
    err = capsys.readouterr().err
    for start in ("'LM' did not converge", "The fitted total flux", "The median of the 80 border pixels"):
        assert sum(w.startswith(start) for w in result["warnings"]) == 1
        assert f"lenstronomy-vae fit: warning: {start}" in err
    assert err.count("warning:") == len(result["warnings"])  # printed once each, not also by the warnings module


@pytest.mark.parametrize("scale", ["-0.03", "0", "nan"])
def test_a_non_positive_pixel_scale_is_refused(files, galaxy_model_path, tmp_path, capsys, scale):
    code, _ = run_fit(files, galaxy_model_path, tmp_path, "--pixel-scale", scale)
    assert code == 2
    assert f"--pixel-scale must be a positive number of arcsec per pixel; got {float(scale)}" in capsys.readouterr().err


def test_a_galsim_shaped_psf_is_padded_with_a_note(files, galaxy_model_path, tmp_path, capsys):
    tall = np.zeros((15, 11))
    tall[2:13] = PSF
    code, result = run_fit(files, galaxy_model_path, tmp_path, psf=write(tmp_path / "tall.fits", tall))
    assert code == 0
    assert result["notes"] == ["The PSF kernel of shape (15, 11) was zero-padded to 15 × 15 pixels, centred on its "
                               "brightest pixel (row 7, column 5): lenstronomy needs a square kernel of odd size."]
    assert "note: The PSF kernel of shape (15, 11)" in capsys.readouterr().out


def test_rectangular_stamps_and_single_plane_cubes_are_fitted(files, galaxy_model_path, tmp_path):
    rectangle = galaxy(galaxy_model_path, shape=(20, 26))
    code, result = run_fit(files, galaxy_model_path, tmp_path, image=write(tmp_path / "rectangle.fits", rectangle))
    assert code == 0 and result["pixels"] == 20 * 26
    assert result["parameters"]["amp"] == pytest.approx(2.0, rel=0.05)
    cube = write(tmp_path / "cube.fits", files["array"][None])
    code, result = run_fit(files, galaxy_model_path, tmp_path, image=cube)
    assert code == 0 and result["parameters"]["amp"] == pytest.approx(2.0, rel=0.05)


def test_a_mask_file_leaves_pixels_out(files, galaxy_model_path, tmp_path, capsys):
    image = files["array"].copy()
    image[1:5, 1:5] = np.nan  # a bad corner
    mask = np.ones(image.shape, dtype=np.int16)
    mask[1:5, 1:5] = 0
    paths = {"image": write(tmp_path / "bad.fits", image), "mask": write(tmp_path / "mask.fits", mask)}
    code, result = run_fit(files, galaxy_model_path, tmp_path, "--mask", paths["mask"], image=paths["image"])
    assert code == 0 and result["pixels"] == 24 * 24 - 16 and result["mask"] == paths["mask"]
    assert run_fit(files, galaxy_model_path, tmp_path, "--mask", write(tmp_path / "small.fits", mask[:8]))[0] == 2
    assert "mask has shape (8, 24) but the image has (24, 24)" in capsys.readouterr().err


def test_psf_and_noise_hdus_are_selectable(files, galaxy_model_path, tmp_path, capsys):
    psf = write(tmp_path / "psfs.fits", np.zeros((3, 3)), PSF)  # the first 2-D HDU is not the PSF
    noise = write(tmp_path / "noises.fits", np.zeros((3, 3)), np.full((24, 24), NOISE))
    assert run_fit(files, galaxy_model_path, tmp_path, psf=psf)[0] == 2
    assert "psf must be finite with a positive sum" in capsys.readouterr().err
    code, result = run_fit(files, galaxy_model_path, tmp_path, "--psf-hdu", "1", "--noise-map", noise,
                           "--noise-hdu", "1", psf=psf)
    assert code == 0 and result["reduced_chi2"] == pytest.approx(1.0, abs=0.3)
    assert run_fit(files, galaxy_model_path, tmp_path, "--noise-hdu", "1")[0] == 2
    assert "--noise-hdu selects an HDU of --noise-map FILE, which is not given" in capsys.readouterr().err


def test_band_selects_the_band_of_a_multi_band_model(files, multiband_model_path, tmp_path, capsys):
    image = write(tmp_path / "r.fits", galaxy(multiband_model_path, band="r"))
    code, result = run_fit(files, multiband_model_path, tmp_path, "--band", "r", image=image)
    assert code == 0 and result["band"] == "r" and result["parameters"]["amp"] == pytest.approx(2.0, rel=0.05)
    assert run_fit(files, multiband_model_path, tmp_path, image=image)[0] == 2
    assert "has 3 bands ('g', 'r', 'i'): pass --band NAME" in capsys.readouterr().err


def test_help_says_the_image_is_sky_subtracted_and_the_noise_units(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "sky-subtracted" in text
    assert "per-pixel noise standard deviation (1σ, not the variance), in the image's units" in text
    for option in ("--mask", "--psf-hdu", "--noise-hdu", "--band", "--restarts"):
        assert option in text
    assert "nonzero = fit the pixel, 0 = leave it out" in text
