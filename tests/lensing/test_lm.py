"""The 'LM' fitting step, its decoder derivatives, and fit_galaxy."""

import numpy as np
import pytest
from lenstronomy.Workflow.fitting_sequence import FittingSequence

import lenstronomy_vae  # noqa: F401  (registers 'VAE' and 'LM')
from lenstronomy_vae.lensing.galaxy_fit import fit_galaxy
from lenstronomy_vae.lensing.lm import levenberg_marquardt
from lenstronomy_vae.lensing.parameters import latent_prior, vae_source_params
from lenstronomy_vae.lensing.profile import VAEProfile
from lenstronomy_vae.networks.galaxy_model import load_galaxy_model

TRUE_LATENTS = {"z_0": 0.6, "z_1": -0.8, "z_2": 0.3, "z_3": 0.5}
PIXEL_SCALE = 0.05
PSF = np.outer(*2 * [np.exp(-0.5 * (np.arange(-3, 4) / 1.2) ** 2)])


def noisy_galaxy(model_path, noise=0.0005, seed=0, center=(0.03, -0.02), num_pix=24):
    """A decoded tiny-model galaxy (amp 1, known latents), PSF-convolved, with Gaussian noise."""
    profile = VAEProfile(model_path)
    coordinates = (np.arange(num_pix) - (num_pix - 1) / 2) * PIXEL_SCALE
    x, y = np.meshgrid(coordinates, coordinates)
    sb = profile.function(x, y, amp=1.0, center_x=center[0], center_y=center[1], scale=0.05, phi_G=0.0, **TRUE_LATENTS)
    from scipy.signal import fftconvolve

    image = fftconvolve(sb * PIXEL_SCALE**2, PSF / PSF.sum(), mode="same")
    return image + np.random.default_rng(seed).normal(0.0, noise, image.shape)


def galaxy_fitting_sequence(model_path, image, noise, init_latents=None, fixed=None, lower=None, upper=None):
    num_pix = image.shape[0]
    origin = -(num_pix - 1) / 2 * PIXEL_SCALE
    kwargs_data = {"image_data": image, "noise_map": np.full(image.shape, noise), "ra_at_xy_0": origin,
                   "dec_at_xy_0": origin, "transform_pix2angle": np.diag([PIXEL_SCALE, PIXEL_SCALE])}
    init, sigma, fixed_default, lower_default, upper_default = vae_source_params(
        model_path, latents=init_latents, fix_phi_G=True, fix_scale=True)
    params = [[init], [sigma], [{**fixed_default, **(fixed or {})}], [{**lower_default, **(lower or {})}],
              [{**upper_default, **(upper or {})}]]
    return FittingSequence(
        {"multi_band_list": [[kwargs_data, {"psf_type": "PIXEL", "kernel_point_source": PSF / PSF.sum()},
                              {"supersampling_factor": 1}]], "multi_band_type": "single-band"},
        {"lens_light_model_list": ["VAE"], "lens_light_profile_kwargs_list": [{"model": model_path}]},
        {}, {"prior_lens_light": latent_prior(0, model_path)}, {"lens_light_model": params},
    )


def test_decoder_jacobian_agrees_with_finite_differences(galaxy_model_path):
    profile = VAEProfile(galaxy_model_path)
    stamp, jacobian = profile.stamp_jacobian(**TRUE_LATENTS)
    np.testing.assert_allclose(stamp, profile.normalized_stamp(**TRUE_LATENTS), atol=1e-6)
    h = 1e-3
    for i in range(4):
        up = {**TRUE_LATENTS, f"z_{i}": TRUE_LATENTS[f"z_{i}"] + h}
        down = {**TRUE_LATENTS, f"z_{i}": TRUE_LATENTS[f"z_{i}"] - h}
        finite = (profile.normalized_stamp(**up) - profile.normalized_stamp(**down)) / (2 * h)
        scale = np.abs(jacobian[..., i]).max()
        assert scale > 0
        np.testing.assert_allclose(jacobian[..., i], finite, atol=0.02 * scale)


def test_levenberg_marquardt_solves_a_bounded_least_squares_problem():
    # Rosenbrock as residuals; the unconstrained minimum (1, 1) lies outside the box x ≤ 0.5.
    def residuals(p):
        return np.array([10 * (p[1] - p[0] ** 2), 1 - p[0]])

    def jacobian(p):
        return np.array([[-20 * p[0], 10.0], [-1.0, 0.0]])

    free = levenberg_marquardt(residuals, jacobian, [-1.2, 1.0], [-5, -5], [5, 5], max_iterations=200,
                               tolerance=1e-15)
    np.testing.assert_allclose(free["x"], [1.0, 1.0], atol=1e-5)
    boxed = levenberg_marquardt(residuals, jacobian, [-1.2, 1.0], [-5, -5], [0.5, 5], max_iterations=200,
                                tolerance=1e-15)
    np.testing.assert_allclose(boxed["x"], [0.5, 0.25], atol=1e-5)
    assert all(np.diff(boxed["chi2_history"]) <= 0)


def test_lm_recovers_latents_and_centre_of_a_noisy_decoded_galaxy(galaxy_model_path):
    image = noisy_galaxy(galaxy_model_path)
    fitting = galaxy_fitting_sequence(galaxy_model_path, image, noise=0.0005)
    chain = fitting.fit_sequence([["LM", {"max_iterations": 60}]])
    step, kwargs_result, info = chain[-1]
    assert step == "LM" and info["converged"]
    result = kwargs_result["kwargs_lens_light"][0]
    assert result["center_x"] == pytest.approx(0.03, abs=0.005)
    assert result["center_y"] == pytest.approx(-0.02, abs=0.005)
    for name, value in TRUE_LATENTS.items():
        assert result[name] == pytest.approx(value, abs=0.2), name
    # The step's χ² is lenstronomy's own −2 logL at the result.
    assert -0.5 * info["chi2"] == pytest.approx(fitting.best_fit_likelihood(), rel=1e-6)
    assert info["chi2"] / image.size == pytest.approx(1.0, abs=0.25)


def test_lm_respects_bounds_and_fixed_parameters(galaxy_model_path):
    image = noisy_galaxy(galaxy_model_path)
    fitting = galaxy_fitting_sequence(galaxy_model_path, image, noise=0.0005, fixed={"z_2": -0.4},
                                      upper={"z_1": -0.9, "center_x": 0.01})
    _, kwargs_result, _ = fitting.fit_sequence([["LM", {"max_iterations": 40}]])[-1]
    result = kwargs_result["kwargs_lens_light"][0]
    assert result["z_2"] == -0.4
    assert result["z_1"] <= -0.9
    assert result["center_x"] == pytest.approx(0.01)  # the true 0.03 lies beyond the bound


def test_lm_after_pso_in_one_fit_sequence_call_updates_the_state(galaxy_model_path):
    image = noisy_galaxy(galaxy_model_path, seed=1)
    fitting = galaxy_fitting_sequence(galaxy_model_path, image, noise=0.0005)
    np.random.seed(0)
    chain = fitting.fit_sequence([["PSO", {"n_particles": 20, "n_iterations": 10}], ["LM", {}],
                                  ["MCMC", {"n_burn": 2, "n_run": 3, "walkerRatio": 4, "sigma_scale": 0.01,
                                            "progress": False}]])
    assert [entry[0] for entry in chain] == ["PSO", "LM", "emcee"]
    pso_logl = max(chain[0][1][0])
    lm_info = chain[1][2]
    assert -0.5 * lm_info["chi2"] > pso_logl
    assert lm_info["chi2_history"][0] >= lm_info["chi2_history"][-1]


def test_fit_galaxy_returns_flux_and_a_good_fit(galaxy_model_path):
    image = noisy_galaxy(galaxy_model_path, seed=2)
    result = fit_galaxy(image, 0.0005, PSF, PIXEL_SCALE, model=galaxy_model_path)
    assert result["kwargs"]["amp"] == pytest.approx(1.0, rel=0.05)
    assert result["reduced_chi2"] == pytest.approx(1.0, abs=0.25)
    assert result["model_image"].shape == image.shape


@pytest.mark.parametrize(
    "image, noise, psf, message",
    [
        (np.full((8, 8), np.nan), 1.0, PSF, "NaN or infinite"),
        (np.zeros((8, 6)), 1.0, PSF, r"square 2-D stamp; got shape \(8, 6\)"),
        (np.zeros((8, 8)), 0.0, PSF, "noise_map must be positive"),
        (np.zeros((8, 8)), np.ones(3), PSF, r"noise must be a number or an array of the image's shape"),
        (np.zeros((8, 8)), 1.0, np.ones((4, 4)), r"odd size; got shape \(4, 4\)"),
    ],
)
def test_fit_galaxy_refuses_bad_input(galaxy_model_path, image, noise, psf, message):
    with pytest.raises(ValueError, match=message):
        fit_galaxy(image, noise, psf, PIXEL_SCALE, model=galaxy_model_path)


def test_fit_sequence_with_a_vae_refuses_nan_pixels(galaxy_model_path):
    image = noisy_galaxy(galaxy_model_path)
    image[3, 4] = np.nan
    fitting = galaxy_fitting_sequence(galaxy_model_path, image, noise=0.0005)
    with pytest.raises(ValueError, match=r"band 0 of multi_band_list: image_data has 1 NaN .* \(3, 4\)"):
        fitting.fit_sequence([["PSO", {"n_particles": 4, "n_iterations": 1}]])


def test_galaxy_model_is_loaded_once(galaxy_model_path):
    assert VAEProfile(galaxy_model_path).galaxy_model is load_galaxy_model(galaxy_model_path)


def test_stamp_jacobian_is_zero_where_the_normalisation_saturates(galaxy_model_path, monkeypatch):
    from lenstronomy_vae.networks import jacobian

    model = load_galaxy_model(galaxy_model_path)
    y = np.full((16, 16, 1), 0.5, dtype=np.float32)
    y[3, 4] = 1.0  # a decoder output beyond the clip: the inverse normalisation is flat there
    tangents = np.ones((4, 16, 16, 1), dtype=np.float32)
    monkeypatch.setattr(jacobian, "decoder_jacobian", lambda galaxy_model, z: (y, tangents))
    stamp, derivatives = jacobian.unit_flux_stamp_jacobian(model, np.zeros(4))
    assert np.all(np.isfinite(derivatives)) and np.abs(derivatives).max() < 10
    # The saturated pixel's decoder tangent must not matter at all.
    tangents[:, 3, 4] = 0.0
    _, without = jacobian.unit_flux_stamp_jacobian(model, np.zeros(4))
    np.testing.assert_allclose(derivatives, without, rtol=1e-12, atol=1e-15)
