"""fit_galaxy on tiny galaxies: convergence, bounds and warnings, restarts, masks, PSF and stamp shapes, bad input."""

import pathlib
import warnings

import numpy as np
import pytest
from astropy.io import fits
from scipy.signal import fftconvolve

from lenstronomy_vae.lensing import profile as profile_module
from lenstronomy_vae.lensing.galaxy_fit import GalaxyFitWarning, fit_galaxy, prepare_psf
from lenstronomy_vae.lensing.profile import VAEProfile

PIXEL_SCALE = 0.05  # arcsec per pixel, the tiny models' training scale
NOISE = 0.0005  # per-pixel σ, image units
LATENTS = {"z_0": 0.6, "z_1": -0.8, "z_2": 0.3, "z_3": 0.5}
CENTER = (0.03, -0.02)  # arcsec
PSF = np.outer(*2 * [np.exp(-0.5 * (np.arange(-5, 6) / 1.2) ** 2)])
COSMOS = pathlib.Path(__file__).resolve().parents[3] / "shared" / "data" / "cosmos"


def galaxy_image(model_path, shape=(24, 24), center=CENTER, band=None, seed=0):
    """A decoded tiny-model galaxy of total flux 1 (latents LATENTS), PSF-convolved, with Gaussian noise."""
    rows, columns = shape
    x, y = np.meshgrid((np.arange(columns) - (columns - 1) / 2) * PIXEL_SCALE,
                       (np.arange(rows) - (rows - 1) / 2) * PIXEL_SCALE)
    surface_brightness = VAEProfile(model_path, band=band).function(
        x, y, amp=1.0, center_x=center[0], center_y=center[1], scale=PIXEL_SCALE, **LATENTS)
    image = fftconvolve(surface_brightness * PIXEL_SCALE**2, PSF / PSF.sum(), mode="same")
    return image + np.random.default_rng(seed).normal(0.0, NOISE, image.shape)


def fit(image, model_path, psf=PSF, **kwargs):
    """fit_galaxy with the tiny model, its warnings recorded: (result, [GalaxyFitWarning messages])."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fit_galaxy(image, NOISE, psf, PIXEL_SCALE, model=model_path, **kwargs)
    return result, [str(w.message) for w in caught if issubclass(w.category, GalaxyFitWarning)]


@pytest.fixture(scope="module")
def image(galaxy_model_path):
    return galaxy_image(galaxy_model_path)


def test_a_clean_fit_converges_within_bounds_and_warns_nothing(galaxy_model_path, image):
    result, emitted = fit(image, galaxy_model_path)
    assert result["converged"] is True
    assert result["kwargs"]["amp"] == pytest.approx(1.0, rel=0.03)
    assert result["stamp_flux"] == pytest.approx(1.0, rel=0.03)
    assert result["at_bounds"] == [] and result["latent_norm_squared"] < result["latent_norm_limit"]
    assert result["latent_norm_limit"] == pytest.approx(18.47, abs=0.01)  # χ²_4 at 99.9 %
    assert result["warnings"] == [] and emitted == [] and result["notes"] == []
    assert result["pixels"] == image.size and result["reduced_chi2"] == pytest.approx(1.0, abs=0.15)


def test_an_iteration_cap_is_reported_as_not_converged(galaxy_model_path, image):
    result, emitted = fit(image, galaxy_model_path, max_iterations=1)
    assert result["converged"] is False and result["iterations"] == 1
    assert any("'LM' did not converge: it spent its 1 iterations" in w for w in result["warnings"])
    assert len(emitted) == 1


def test_a_cut_out_smaller_than_the_galaxy_warns_that_the_flux_is_far_from_the_stamp_sum(galaxy_model_path, image):
    result, emitted = fit(image[8:16, 8:16], galaxy_model_path)
    assert result["kwargs"]["amp"] > 1.5 * result["stamp_flux"]
    flux = [w for w in result["warnings"] if w.startswith("The fitted total flux")]
    assert len(flux) == 1 and "larger than the stamp" in flux[0] and "unsubtracted sky" in flux[0]
    assert "falls outside the stamp" in flux[0]
    assert len(emitted) == 1 and flux[0] in emitted[0]


@pytest.mark.parametrize("pedestal, side", [(0.002, "above"), (-0.002, "below")])
def test_a_sky_pedestal_is_warned(galaxy_model_path, image, pedestal, side):
    result, _ = fit(image + pedestal, galaxy_model_path)
    sky = [w for w in result["warnings"] if w.startswith("The median of the 176 border pixels")]
    assert len(sky) == 1 and f"σ {side} zero" in sky[0] and "sky-subtracted" in sky[0]


def test_a_small_sky_within_the_noise_is_not_warned(galaxy_model_path, image):
    result, _ = fit(image + 0.00002, galaxy_model_path)  # 0.04 σ per pixel: 0.5 σ of the border median
    assert not any("border pixels" in w for w in result["warnings"])


def test_an_off_centre_psf_is_warned(galaxy_model_path, image):
    result, _ = fit(image, galaxy_model_path, psf=np.roll(PSF, 3, axis=1))
    assert any(w.startswith("The PSF's brightest pixel is 3.0 px") for w in result["warnings"])
    assert not prepare_psf(np.roll(PSF, 1, axis=1))[2]  # 1 px is tolerated


def test_parameters_pressed_against_a_bound_are_named(galaxy_model_path, monkeypatch):
    # A galaxy twice the decoder's at the training scale, with the scale bounded to ±10 % of it.
    monkeypatch.setattr(profile_module, "_SCALE_FACTOR_RANGE", (0.9, 1.1))
    big = VAEProfile(galaxy_model_path).function
    rows = np.arange(24) - 11.5
    x, y = np.meshgrid(rows * PIXEL_SCALE, rows * PIXEL_SCALE)
    image = big(x, y, amp=1.0, scale=2 * PIXEL_SCALE, **LATENTS) * PIXEL_SCALE**2
    image += np.random.default_rng(1).normal(0.0, NOISE, image.shape)
    result, _ = fit(image, galaxy_model_path)
    assert "scale" in result["at_bounds"]
    assert result["kwargs"]["scale"] == pytest.approx(1.1 * PIXEL_SCALE, rel=1e-3)
    assert any(w.startswith("Parameters at their bounds: scale") for w in result["warnings"])


def test_a_latent_norm_beyond_the_prior_is_flagged(galaxy_model_path):
    # Two blobs 12 px apart: no galaxy of the VAE, whose latents run far out to mimic them.
    y, x = np.indices((24, 24))
    image = sum(np.exp(-((x - cx) ** 2 + (y - 12) ** 2) / 4) for cx in (6, 18))
    image = image / image.sum() + np.random.default_rng(0).normal(0.0, NOISE, image.shape)
    result, _ = fit(image, galaxy_model_path)
    assert result["latent_norm_squared"] > result["latent_norm_limit"]
    assert "latent_norm" in result["at_bounds"]
    assert any(w.startswith("Σz² = ") and "99.9% quantile of χ² with 4 degrees of freedom" in w
               for w in result["warnings"])


def test_warnings_are_emitted_once_per_fit_whatever_the_restarts(galaxy_model_path, image):
    result, emitted = fit(image[8:16, 8:16] + 0.002, galaxy_model_path, restarts=2)
    assert len(result["warnings"]) >= 2
    assert emitted == [" ".join(result["warnings"])]


def test_restarts_run_seeded_and_the_lowest_chi2_wins(galaxy_model_path, image):
    single, _ = fit(image, galaxy_model_path)
    result, _ = fit(image, galaxy_model_path, restarts=3, seed=4)
    runs = result["restarts"]
    assert runs["ran"] == 3 and len(runs["chi2"]) == 4
    assert runs["chi2"][0] == pytest.approx(single["restarts"]["chi2"][0])  # start 0 is the mean galaxy
    assert runs["winner"] == int(np.argmin(runs["chi2"]))
    assert min(runs["chi2"]) <= single["restarts"]["chi2"][0]
    again, _ = fit(image, galaxy_model_path, restarts=3, seed=4)
    other, _ = fit(image, galaxy_model_path, restarts=3, seed=5)
    assert again["restarts"] == runs
    assert other["restarts"]["chi2"][1:] != runs["chi2"][1:]
    assert single["restarts"] == {"ran": 0, "winner": 0, "chi2": single["restarts"]["chi2"]}


def test_a_rectangular_stamp_is_fitted_in_its_own_coordinates(galaxy_model_path):
    image = galaxy_image(galaxy_model_path, shape=(20, 28))
    result, _ = fit(image, galaxy_model_path)
    assert result["model_image"].shape == (20, 28) and result["pixels"] == 20 * 28
    assert result["kwargs"]["amp"] == pytest.approx(1.0, rel=0.03)
    assert result["kwargs"]["center_x"] == pytest.approx(CENTER[0], abs=0.01)  # arcsec, along the 28 columns
    assert result["kwargs"]["center_y"] == pytest.approx(CENTER[1], abs=0.01)
    assert result["reduced_chi2"] == pytest.approx(1.0, abs=0.15)


def test_a_cube_of_one_plane_fits_like_its_image(galaxy_model_path, image):
    plane, _ = fit(image, galaxy_model_path)
    cube, _ = fit(image[None], galaxy_model_path, psf=PSF[None])
    assert cube["kwargs"] == pytest.approx(plane["kwargs"])


def test_a_mask_leaves_out_a_neighbour_and_its_nan_pixels(galaxy_model_path, image):
    neighbour = image.copy()
    neighbour[2:6, 2:6] += 0.01
    neighbour[3, 3] = np.nan
    mask = np.ones(image.shape)
    mask[1:7, 1:7] = 0
    result, _ = fit(neighbour, galaxy_model_path, mask=mask)
    assert result["pixels"] == image.size - 36
    assert result["reduced_chi2"] == pytest.approx(1.0, abs=0.15)
    assert result["kwargs"]["amp"] == pytest.approx(1.0, rel=0.03)
    assert np.all(result["residuals"][1:7, 1:7] == 0)
    with pytest.raises(ValueError, match=r"1 NaN or infinite pixel\(s\) \(first at row, column \(3, 3\)\)"):
        fit(neighbour, galaxy_model_path, mask=np.ones(image.shape))


def test_a_mask_that_leaves_out_the_centre_is_warned_as_maybe_inverted(galaxy_model_path, image):
    mask = np.ones(image.shape)
    mask[10:14, 10:14] = 0
    result, _ = fit(image, galaxy_model_path, mask=mask)
    assert any("central pixel" in w and "must be inverted" in w for w in result["warnings"])


def test_a_psf_that_is_not_an_odd_square_is_padded_around_its_peak_with_a_note(galaxy_model_path, image):
    tall = np.zeros((15, 11))
    tall[2:13, :] = PSF  # the 11 × 11 PSF inside a 15 × 11 kernel, as GalSim's 65 × 51
    kernel, note, warning = prepare_psf(tall)
    assert kernel.shape == (15, 15) and kernel.sum() == pytest.approx(1.0)
    assert np.argmax(kernel) == np.ravel_multi_index((7, 7), (15, 15)) and warning is None
    assert note.startswith("The PSF kernel of shape (15, 11) was zero-padded to 15 × 15 pixels")
    even = prepare_psf(PSF[:10, :10])[0]
    assert even.shape == (11, 11) and np.argmax(even) == np.ravel_multi_index((5, 5), (11, 11))
    result, _ = fit(image, galaxy_model_path, psf=tall)
    assert result["notes"] == [note]
    assert result["kwargs"]["amp"] == pytest.approx(fit(image, galaxy_model_path)[0]["kwargs"]["amp"], rel=1e-3)


def test_a_multi_band_model_fits_the_band_it_is_given(multiband_model_path):
    image = galaxy_image(multiband_model_path, band="r")
    result, _ = fit(image, multiband_model_path, band="r")
    assert result["kwargs"]["amp"] == pytest.approx(1.0, rel=0.03)
    with pytest.raises(ValueError, match=r"has 3 bands \('g', 'r', 'i'\): pass band="):
        fit(image, multiband_model_path)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"pixel_scale": -0.03}, r"pixel_scale must be a positive number of arcsec per pixel; got -0.03"),
        ({"pixel_scale": 0.0}, r"pixel_scale must be a positive number"),
        ({"pixel_scale": float("nan")}, r"pixel_scale must be a positive number"),
        ({"image": np.zeros((2, 8, 8))}, r"image must be a 2-D array \(or a \(1, H, W\) cube\); got shape \(2, 8, 8\)"),
        ({"image": np.zeros(8)}, r"image must be a 2-D array .*got shape \(8,\)"),
        ({"image": np.zeros((8, 8))}, r"no positive pixel among those fitted: nothing to fit"),
        ({"image": np.full((8, 8), np.inf)}, r"64 NaN or infinite pixel\(s\)"),
        ({"noise": 0.0}, r"noise_map must be positive"),
        ({"noise": np.ones(3)}, r"noise must be a number or an array of the image's shape \(24, 24\); got shape"),
        ({"psf": np.full((5, 5), np.nan)}, r"psf must be finite with a positive sum"),
        ({"psf": np.zeros((5, 5))}, r"psf must be finite with a positive sum; got sum 0.0"),
        ({"psf": np.ones(5)}, r"psf must be a 2-D array .*got shape \(5,\)"),
        ({"mask": np.ones((8, 8))}, r"mask has shape \(8, 8\) but the image has \(24, 24\)"),
        ({"mask": np.zeros((24, 24))}, r"no pixel left to fit: the mask \(nonzero = use the pixel\)"),
        ({"mask": np.full((24, 24), np.nan)}, r"mask has 576 NaN or infinite value\(s\)"),
        ({"restarts": -1}, r"restarts must be a non-negative integer; got -1"),
        ({"restarts": 1.5}, r"restarts must be a non-negative integer; got 1.5"),
        ({"max_iterations": 0}, r"max_iterations must be a positive integer, got 0"),
        ({"seed": -1}, r"seed must be a non-negative integer, got -1"),
        ({"band": "q"}, r"band 'q' is not in model"),
    ],
)
def test_bad_input_is_refused_with_a_message_naming_it(galaxy_model_path, image, change, message):
    arguments = {"image": image, "noise": NOISE, "psf": PSF, "pixel_scale": PIXEL_SCALE, **change}
    with pytest.raises(ValueError, match=message):
        fit_galaxy(model=galaxy_model_path, **arguments)


@pytest.mark.slow  # the shipped model on a real galaxy
@pytest.mark.skipif(not COSMOS.is_dir(), reason=f"{COSMOS} absent (real COSMOS galaxies)")
def test_restarts_lower_chi2_on_cosmos_ident_2_with_its_catalogue_psf():
    with fits.open(COSMOS / "cosmos_f814w_validation_catalog.fits") as catalog:
        row = catalog[1].data[1]
    assert row["IDENT"] == 2
    with fits.open(COSMOS / "cosmos_f814w_validation_images.fits") as images, \
            fits.open(COSMOS / "cosmos_f814w_validation_psf.fits") as psfs:
        image = images[int(row["GAL_HDU"])].data - float(row["NOISE_MEAN"])
        psf = psfs[int(row["PSF_HDU"])].data  # 65 × 51
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GalaxyFitWarning)
        # hst64, whose start from the mean galaxy stops short here (hst64_large's reaches 2470, its restarts 2465).
        result = fit_galaxy(image, np.sqrt(row["NOISE_VARIANCE"]), psf, float(row["PIXEL_SCALE"]), model="hst64",
                            restarts=4)
    assert result["notes"][0].startswith("The PSF kernel of shape (65, 51) was zero-padded to 65 × 65 pixels")
    chi2 = result["restarts"]["chi2"]
    assert min(chi2) < 0.95 * chi2[0]  # measured: 2395 against 2735 from the mean galaxy
    assert result["kwargs"]["amp"] == pytest.approx(result["stamp_flux"], rel=0.1)
