"""The 'LM' fitting step, its decoder derivatives, and fit_galaxy."""

import inspect

import numpy as np
import pytest
from lenstronomy.Data.imaging_data import ImageData
from lenstronomy.Data.psf import PSF as PSFModel
from lenstronomy.ImSim.image_model import ImageModel
from lenstronomy.LensModel.lens_model import LensModel
from lenstronomy.LightModel.light_model import LightModel
from lenstronomy.Sampling.likelihood import Likelihood
from lenstronomy.Util import simulation_util
from lenstronomy.Workflow.fitting_sequence import FittingSequence

import lenstronomy_vae  # noqa: F401  (registers 'VAE' and 'LM')
from lenstronomy_vae.lensing.galaxy_fit import fit_galaxy
from lenstronomy_vae.lensing.lm import UNMODELLED_LIKELIHOOD_TERMS, ImageResiduals, _rays_shot_once, levenberg_marquardt
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


def galaxy_fitting_sequence(model_path, image, noise, init_latents=None, fixed=None, lower=None, upper=None,
                            likelihood=None, model=None, kwargs_params=None):
    """FittingSequence of one 'VAE' lens-light galaxy; ``likelihood``, ``model`` and ``kwargs_params``
    add to its kwargs_likelihood, kwargs_model and kwargs_params."""
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
        {"lens_light_model_list": ["VAE"], "lens_light_profile_kwargs_list": [{"model": model_path}], **(model or {})},
        {}, {"prior_lens_light": latent_prior(0, model_path), **(likelihood or {})},
        {"lens_light_model": params, **(kwargs_params or {})},
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


def rosenbrock(p):
    """Rosenbrock's function as residuals: minimum 0 at (1, 1)."""
    return np.array([10 * (p[1] - p[0] ** 2), 1 - p[0]])


def rosenbrock_jacobian(p):
    return np.array([[-20 * p[0], 10.0], [-1.0, 0.0]])


def test_levenberg_marquardt_solves_a_bounded_least_squares_problem():
    # The unconstrained minimum (1, 1) lies outside the box x ≤ 0.5.
    free = levenberg_marquardt(rosenbrock, rosenbrock_jacobian, [-1.2, 1.0], [-5, -5], [5, 5], max_iterations=200,
                               tolerance=1e-15)
    np.testing.assert_allclose(free["x"], [1.0, 1.0], atol=1e-5)
    boxed = levenberg_marquardt(rosenbrock, rosenbrock_jacobian, [-1.2, 1.0], [-5, -5], [0.5, 5],
                                max_iterations=200, tolerance=1e-15)
    np.testing.assert_allclose(boxed["x"], [0.5, 0.25], atol=1e-5)
    assert all(np.diff(boxed["chi2_history"]) <= 0)


def test_levenberg_marquardt_on_its_iteration_cap_has_not_converged():
    result = levenberg_marquardt(rosenbrock, rosenbrock_jacobian, [-1.2, 1.0], [-5, -5], [5, 5], max_iterations=3,
                                 tolerance=1e-15)
    assert result["iterations"] == 3 and len(result["chi2_history"]) == 4
    assert result["converged"] is False


def test_levenberg_marquardt_stall_converges_only_where_the_model_predicts_no_gain():
    # r = (x − 1, x − 3) from its minimum x = 2 (χ² = 2): no step lowers χ², and none is predicted to.
    at_minimum = levenberg_marquardt(lambda x: np.array([x[0] - 1, x[0] - 3]), lambda x: np.array([[1.0], [1.0]]),
                                     [2.0], [-10], [10])
    assert at_minimum["converged"] is True and at_minimum["iterations"] == 0
    assert at_minimum["x"] == [2.0] and at_minimum["chi2"] == 2.0

    # A penalty wall (as lenstronomy's positive-flux check): every step towards the minimum x = 2
    # is rejected, although the Jacobian (0 for the piecewise-constant penalty) promises χ² = 0.
    def walled(x):
        return np.array([x[0] - 2, 1e4 if x[0] > 0.5 else 0.0])

    stuck = levenberg_marquardt(walled, lambda x: np.array([[1.0], [0.0]]), [0.5], [-10], [10])
    assert stuck["x"] == [0.5] and stuck["iterations"] == 0 and stuck["evaluations"] > 10
    assert stuck["converged"] is False
    # A wrong derivative: every step goes uphill.
    uphill = levenberg_marquardt(lambda x: np.array([x[0] - 2]), lambda x: np.array([[-1.0]]), [0.0], [-10], [10])
    assert uphill["x"] == [0.0] and uphill["converged"] is False


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


def test_lm_step_on_its_iteration_cap_reports_not_converged(galaxy_model_path):
    image = noisy_galaxy(galaxy_model_path)
    fitting = galaxy_fitting_sequence(galaxy_model_path, image, noise=0.0005)
    step, _, info = fitting.fit_sequence([["LM", {"max_iterations": 2}]])[-1]
    assert step == "LM" and info["iterations"] == 2
    assert info["converged"] is False


def galaxy_and_gaussian_sequence(model_path, image, noise, check_positive_flux):
    """A 'VAE' galaxy plus a round GAUSSIAN (both lens light), the Gaussian's width free."""
    num_pix = image.shape[0]
    origin = -(num_pix - 1) / 2 * PIXEL_SCALE
    kwargs_data = {"image_data": image, "noise_map": np.full(image.shape, noise), "ra_at_xy_0": origin,
                   "dec_at_xy_0": origin, "transform_pix2angle": np.diag([PIXEL_SCALE, PIXEL_SCALE])}
    vae = vae_source_params(model_path, center_x=0.03, center_y=-0.02, fix_phi_G=True, fix_scale=True)
    gaussian = [{"amp": 1.0, "sigma": 0.2, "center_x": 0.0, "center_y": 0.0}, {"sigma": 0.05},
                {"center_x": 0.0, "center_y": 0.0}, {"sigma": 0.02}, {"sigma": 1.0}]
    return FittingSequence(
        {"multi_band_list": [[kwargs_data, {"psf_type": "PIXEL", "kernel_point_source": PSF / PSF.sum()},
                              {"supersampling_factor": 1}]], "multi_band_type": "single-band"},
        {"lens_light_model_list": ["VAE", "GAUSSIAN"], "lens_light_profile_kwargs_list": [{"model": model_path}, None]},
        {}, {"prior_lens_light": latent_prior(0, model_path), "check_positive_flux": check_positive_flux},
        {"lens_light_model": [list(pair) for pair in zip(vae, gaussian)]},
    )


def test_lm_with_check_positive_flux_rejects_steps_to_a_negative_amplitude(galaxy_model_path):
    # A galaxy with a dip at its centre: left free, the Gaussian fits the dip with a negative amplitude.
    image = noisy_galaxy(galaxy_model_path)
    x, y = np.meshgrid(*2 * [(np.arange(24) - 11.5) * PIXEL_SCALE])
    image -= 0.005 * np.exp(-0.5 * (x**2 + y**2) / 0.1**2)
    amplitudes, chi2 = {}, {}
    for check in (False, True):
        fitting = galaxy_and_gaussian_sequence(galaxy_model_path, image, 0.0005, check_positive_flux=check)
        _, kwargs_result, info = fitting.fit_sequence([["LM", {"max_iterations": 60}]])[-1]
        image_model = fitting.likelihood_class.image_likelihood.imSim
        amplitudes[check] = image_model.image_linear_solve(kwargs_lens_light=kwargs_result["kwargs_lens_light"])[3]
        chi2[check] = info["chi2"]
        # The step's χ² is lenstronomy's −2 logL, penalty included, at every accepted point below the penalty.
        args = fitting.param_class.kwargs2args(**kwargs_result)
        assert info["chi2"] == pytest.approx(-2 * fitting.likelihood_class.logL(args), rel=1e-6)
        assert max(info["chi2_history"]) < 2e8
    assert amplitudes[False][1] < -0.01
    assert np.all(amplitudes[True] >= 0)
    assert chi2[False] < chi2[True]


def lensed_vae_sequence(model_path, num_pix=20, noise=0.05):
    """SIS + 'VAE' source (Poisson and background noise) with check_positive_flux and Gaussian priors
    on θ_E and on every latent, z_2 fixed 0.7 σ from its prior's mean."""
    kwargs_data = simulation_util.data_configure_simple(num_pix, PIXEL_SCALE, exposure_time=1e4, background_rms=noise)
    kwargs_psf = {"psf_type": "GAUSSIAN", "fwhm": 0.1}
    kwargs_numerics = {"supersampling_factor": 2}
    lens = [{"theta_E": 0.4, "center_x": 0.0, "center_y": 0.0}]
    source = {"amp": 50.0, "center_x": 0.05, "center_y": -0.03, "scale": 0.05, "phi_G": 0.0, **TRUE_LATENTS}
    image = ImageModel(ImageData(**kwargs_data), PSFModel(**kwargs_psf), LensModel(["SIS"]),
                       LightModel(["VAE"], profile_kwargs_list=[{"model": model_path}]),
                       kwargs_numerics=kwargs_numerics).image(lens, [source])
    kwargs_data["image_data"] = image + np.random.default_rng(3).normal(0, noise, image.shape)
    init, sigma, fixed, lower, upper = vae_source_params(model_path, center_x=0.0, center_y=0.0, fix_phi_G=True,
                                                         fix_scale=True)
    kwargs_params = {
        "lens_model": [[{"theta_E": 0.5, "center_x": 0.02, "center_y": 0.02}],
                       [{"theta_E": 0.05, "center_x": 0.02, "center_y": 0.02}], [{}],
                       [{"theta_E": 0.1, "center_x": -0.5, "center_y": -0.5}],
                       [{"theta_E": 1.0, "center_x": 0.5, "center_y": 0.5}]],
        "source_model": [[init], [sigma], [{**fixed, "z_2": 0.7}], [lower], [upper]],
    }
    kwargs_likelihood = {"check_positive_flux": True, "prior_source": latent_prior(0, model_path),
                         "prior_lens": [[0, "theta_E", 0.45, 0.1]]}
    return FittingSequence({"multi_band_list": [[kwargs_data, kwargs_psf, kwargs_numerics]],
                            "multi_band_type": "single-band"},
                           {"lens_model_list": ["SIS"], "source_light_model_list": ["VAE"],
                            "source_light_profile_kwargs_list": [{"model": model_path}]},
                           {}, kwargs_likelihood, kwargs_params)


def test_latent_derivative_images_shoot_rays_once_and_equal_separate_renders(galaxy_model_path, monkeypatch):
    fitting = lensed_vae_sequence(galaxy_model_path)
    residuals = ImageResiduals(fitting)
    args = fitting.param_class.kwargs2args(**fitting._updateManager.parameter_state)
    _, kwargs, _, _ = residuals._evaluate(args)
    (kind, k, profile, pairs), = residuals._latent_columns
    _, stamp_jacobian = profile.stamp_jacobian(**{name: value for name, value in kwargs["kwargs_source"][0].items()
                                                   if name.startswith("z_")})
    # Each derivative rendered on its own, through an image model of its own.
    image_model = ImageModel(ImageData(**fitting.multi_band_list[0][0]),
                             PSFModel(**fitting.multi_band_list[0][1]), LensModel(["SIS"]),
                             LightModel(["VAE"], profile_kwargs_list=[{"model": galaxy_model_path}]),
                             kwargs_numerics=fitting.multi_band_list[0][2])
    separate = []
    for latent, _ in pairs:
        with image_model.SourceModel.func_list[0].substituted_stamp(stamp_jacobian[..., latent]):
            separate.append(image_model.source_surface_brightness(kwargs["kwargs_source"], kwargs["kwargs_lens"]))
    calls = []
    shoot = LensModel.ray_shooting
    monkeypatch.setattr(LensModel, "ray_shooting", lambda self, *a, **kw: calls.append(1) or shoot(self, *a, **kw))
    images = residuals._latent_derivative_images(kind, k, profile, pairs, kwargs)
    assert len(pairs) == 3 and len(calls) == 1
    for image, expected in zip(images, separate):
        np.testing.assert_allclose(image, expected, rtol=1e-12, atol=1e-12 * np.abs(expected).max())
    assert "ray_shooting" not in vars(residuals.im_sim.LensModel)  # the method is lenstronomy's again


def test_rays_shot_once_gives_lenstronomys_rays_and_restores_the_lens_model():
    lens_model = LensModel(["SIS"])
    kwargs = [{"theta_E": 1.0, "center_x": 0.1, "center_y": 0.0}]
    x, y = np.linspace(-1.0, 1.0, 7), np.linspace(0.5, -0.5, 7)
    with _rays_shot_once(lens_model):
        outer = lens_model.ray_shooting
        with _rays_shot_once(lens_model):
            first = lens_model.ray_shooting(x, y, kwargs)
            assert lens_model.ray_shooting(x, y, kwargs) is first
            assert lens_model.ray_shooting(x, y, [dict(kwargs[0])]) is not first  # other dicts: shot again
        assert lens_model.ray_shooting is outer
    assert "ray_shooting" not in vars(lens_model)
    np.testing.assert_array_equal(first, LensModel(["SIS"]).ray_shooting(x, y, kwargs))


def test_lm_chi2_is_minus_two_log_likelihood_of_lenstronomy(galaxy_model_path):
    fitting = lensed_vae_sequence(galaxy_model_path)
    _, kwargs_result, info = fitting.fit_sequence([["LM", {"max_iterations": 15}]])[-1]
    likelihood = fitting.likelihood_class
    args = fitting.param_class.kwargs2args(**kwargs_result)
    assert info["chi2"] == pytest.approx(-2 * likelihood.logL(args), rel=1e-6)
    # And at any point of the box, penalised or not.
    residuals = ImageResiduals(fitting)
    lower, upper = (np.asarray(bound) for bound in fitting.param_class.param_limits())
    rng = np.random.default_rng(0)
    for _ in range(5):
        point = lower + (upper - lower) * rng.uniform(0.2, 0.8, len(lower))
        r = residuals(point)
        assert r @ r == pytest.approx(-2 * likelihood.logL(point), rel=1e-6)


# lenstronomy's defaults of the terms 'LM' refuses when they are on.
NEUTRAL = {key: inspect.signature(Likelihood.__init__).parameters[key].default for key in UNMODELLED_LIKELIHOOD_TERMS}


@pytest.mark.parametrize("key, value", [
    ("source_marg", True),
    ("time_delay_likelihood", True),
    ("custom_logL_addition", lambda **kwargs: 0.0),
    ("kwargs_pixelbased", {"supersampling_factor_source": 2}),
    ("prior_lens_light_kde", [[0, "z_0", np.zeros(5)]]),
    ("prior_lens_light_lognormal", [[0, "scale", -3.0, 0.1]]),
    ("prior_ps", [[0, "point_amp", 1.0, 0.1]]),
])
def test_lm_refuses_likelihood_terms_it_does_not_model(galaxy_model_path, key, value):
    image = noisy_galaxy(galaxy_model_path)
    fitting = galaxy_fitting_sequence(galaxy_model_path, image, noise=0.0005, likelihood={key: value})
    with pytest.raises(ValueError, match=rf"'LM' does not model .*kwargs_likelihood\['{key}'\].*PSO, SIMPLEX or MCMC"):
        fitting.fit_sequence([["LM", {}]])


def test_lm_accepts_likelihood_terms_that_are_off(galaxy_model_path):
    assert all(value in (None, False) for value in NEUTRAL.values())
    off = {**NEUTRAL, "prior_lens_kde": [], "prior_source_lognormal": [], "check_bounds": False, "linear_prior": 1.0}
    image = noisy_galaxy(galaxy_model_path)
    fitting = galaxy_fitting_sequence(galaxy_model_path, image, noise=0.0005, likelihood=off)
    _, _, info = fitting.fit_sequence([["LM", {"max_iterations": 60}]])[-1]
    assert info["converged"]


def test_lm_refuses_point_sources_before_earlier_steps_run(galaxy_model_path, monkeypatch):
    image = noisy_galaxy(galaxy_model_path)
    point_source = [{"ra_image": [0.0], "dec_image": [0.0]}]
    fitting = galaxy_fitting_sequence(
        galaxy_model_path, image, noise=0.0005, model={"point_source_model_list": ["UNLENSED"]},
        kwargs_params={"point_source_model": [point_source, [{"ra_image": [0.01], "dec_image": [0.01]}], [{}],
                                              [{"ra_image": [-0.5], "dec_image": [-0.5]}],
                                              [{"ra_image": [0.5], "dec_image": [0.5]}]]})
    monkeypatch.setattr(FittingSequence, "pso", lambda self, *args, **kwargs: pytest.fail("PSO ran"))
    message = r"'LM' does not fit point sources yet \(point_source_model_list \['UNLENSED'\]"
    with pytest.raises(ValueError, match=message):
        fitting.fit_sequence([["PSO", {"n_particles": 4, "n_iterations": 1}], ["LM", {}]])


def test_lm_term_switched_off_by_update_settings_is_accepted(galaxy_model_path):
    image = noisy_galaxy(galaxy_model_path)
    fitting = galaxy_fitting_sequence(galaxy_model_path, image, noise=0.0005, likelihood={"source_marg": True})
    chain = fitting.fit_sequence([["update_settings", {"kwargs_likelihood": {"source_marg": False}}],
                                  ["LM", {"max_iterations": 60}]])
    assert chain[-1][0] == "LM" and chain[-1][2]["converged"]


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
        (np.zeros((8, 8)), 0.0, PSF, "noise_map must be positive"),
        (np.zeros((8, 8)), np.ones(3), PSF, r"noise must be a number or an array of the image's shape"),
    ],
)
def test_fit_galaxy_refuses_bad_data(galaxy_model_path, image, noise, psf, message):
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


def test_levenberg_marquardt_stall_within_a_hundredth_of_chi2_of_its_minimum_has_converged():
    """An approximate Jacobian can predict a tiny gain where no step helps: below Δχ² = 0.01 that is a minimum."""
    target = np.array([1.0, 2.0])

    def residuals(x):
        return np.concatenate([x - target, [10.0]])  # a constant residual: χ² cannot go below 100

    def slightly_wrong_jacobian(x):
        return np.array([[1.0, 0.0], [0.0, 1.0], [1e-4, 0.0]])  # predicts a gain of ~1e-6 of χ²

    result = levenberg_marquardt(residuals, slightly_wrong_jacobian, target.copy(), [-5, -5], [5, 5],
                                 max_iterations=20, tolerance=1e-9)
    assert result["converged"] is True and result["chi2"] == pytest.approx(100.0)
