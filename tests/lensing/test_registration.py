"""'VAE' through every lenstronomy entry point, with built-in profiles left untouched."""

import copy
import inspect
import pickle

import lenstronomy
import numpy as np
import pytest
from lenstronomy.Data.imaging_data import ImageData
from lenstronomy.Data.psf import PSF
from lenstronomy.ImSim.image_linear_solve import ImageLinearFit
from lenstronomy.ImSim.image_model import ImageModel
from lenstronomy.LensModel.lens_model import LensModel
from lenstronomy.LightModel.light_model import LightModel
from lenstronomy.LightModel.linear_basis import LinearBasis
from lenstronomy.Sampling.likelihood import Likelihood
from lenstronomy.Sampling.Likelihoods.image_likelihood import ImageLikelihood
from lenstronomy.Sampling.parameters import Param
from lenstronomy.SimulationAPI.sim_api import SimAPI
from lenstronomy.Util import class_creator, simulation_util
from lenstronomy.Workflow.fitting_sequence import FittingSequence

import lenstronomy_vae
from lenstronomy_vae import VAEProfile, latent_prior, vae_source_params
from lenstronomy_vae.lensing import registration as lenstronomy_patch

SOURCE = {"amp": 50.0, "center_x": 0.05, "center_y": -0.03, "scale": 0.05, "phi_G": 0.4,
          "z_0": 0.3, "z_1": -0.5, "z_2": 0.1, "z_3": 0.8}
SIS = [{"theta_E": 0.4, "center_x": 0.0, "center_y": 0.0}]
NUMERICS = {"supersampling_factor": 2}


def simulate(model_path, num_pix=32, pixel_scale=0.05, noise_rms=1e-3, seed=3):
    """A lensed VAE source: (ImageData with the noisy image, PSF, LensModel, source LightModel)."""
    kwargs_data = simulation_util.data_configure_simple(
        num_pix, pixel_scale, exposure_time=1e8, background_rms=noise_rms
    )
    data = ImageData(**kwargs_data)
    psf = PSF(psf_type="GAUSSIAN", fwhm=0.1)
    lens = LensModel(["SIS"])
    source = LightModel(["VAE"], profile_kwargs_list=[{"model": model_path}])
    image = ImageModel(data, psf, lens, source, kwargs_numerics=NUMERICS).image(SIS, [SOURCE])
    data.update_data(image + np.random.default_rng(seed).normal(0, noise_rms, image.shape))
    return data, psf, lens, source


def test_light_model_builds_vae_profiles(galaxy_model_path):
    types = ["SERSIC", "VAE", "GAUSSIAN"]
    profile_kwargs = [None, {"model": galaxy_model_path}, {}]
    types_before, kwargs_before = copy.deepcopy(types), copy.deepcopy(profile_kwargs)
    model = LightModel(types, profile_kwargs_list=profile_kwargs)
    assert isinstance(model.func_list[1], VAEProfile)
    assert model.profile_type_list is types and model.profile_type_list == ["SERSIC", "VAE", "GAUSSIAN"]
    assert (types, profile_kwargs) == (types_before, kwargs_before)
    assert model.param_name_list[1] == VAEProfile(galaxy_model_path).param_names

    kwargs = [{"amp": 1.0, "R_sersic": 0.2, "n_sersic": 2.0, "center_x": 0.0, "center_y": 0.0}, dict(SOURCE),
              {"amp": 2.0, "sigma": 0.1, "center_x": 0.0, "center_y": 0.0}]
    x, y = np.linspace(-0.4, 0.4, 50), np.linspace(0.3, -0.3, 50)
    response, n = model.functions_split(x, y, kwargs)
    assert n == 3 and model.num_param_linear(kwargs, list_return=True) == [1, 1, 1]
    np.testing.assert_allclose(response[1] * SOURCE["amp"], model.surface_brightness(x, y, kwargs, k=1))
    updated, i = model.update_linear([3.0, 4.0, 5.0], 0, copy.deepcopy(kwargs))
    assert i == 3 and [kw["amp"] for kw in updated] == [3.0, 4.0, 5.0]
    assert model.total_flux(kwargs, k=1) == [SOURCE["amp"]]
    assert model.total_flux(kwargs, norm=True, k=1) == [1]
    assert model.check_positive_flux_profile(kwargs)
    assert not model.check_positive_flux_profile([kwargs[0], {**SOURCE, "amp": -1.0}, kwargs[2]])
    assert model.profile_type_list is types  # restored after every aliased call
    with pytest.raises(ValueError, match="does not support a 3d light distribution"):
        model.light_3d(np.array([0.1]), kwargs, k=1)


def test_light_model_errors(galaxy_model_path, multiband_model_path):
    with pytest.raises(ValueError, match=r"profile_kwargs_list has 1 entries but light_model_list"):
        LightModel(["SERSIC", "VAE"], profile_kwargs_list=[{"model": galaxy_model_path}])
    with pytest.raises(ValueError, match="pass band="):
        LightModel(["VAE"], profile_kwargs_list=[{"model": multiband_model_path}])
    with pytest.raises(ValueError, match="No light model of type NOT_A_PROFILE.*'VAE'"):
        LightModel(["VAE", "NOT_A_PROFILE"], profile_kwargs_list=[{"model": galaxy_model_path}, None])
    with pytest.raises(ValueError, match="No light model of type NOT_A_PROFILE"):
        LightModel(["NOT_A_PROFILE"])


def test_builtin_profiles_unchanged():
    originals = {
        name: getattr(LinearBasis, name).__lenstronomy_vae_original__
        for name in ["functions_split", "num_param_linear_list", "update_linear",
                     "check_positive_flux_profile", "total_flux"]
    }
    types = ["SERSIC", "GAUSSIAN", "MULTI_GAUSSIAN", "SHAPELETS"]
    profile_kwargs = [{}, None, {}, {}]
    types_before, kwargs_before = copy.deepcopy(types), copy.deepcopy(profile_kwargs)
    model = LightModel(types, profile_kwargs_list=profile_kwargs)
    assert (types, profile_kwargs) == (types_before, kwargs_before)
    assert model.profile_type_list is types and "_vae_alias_types" not in model.__dict__
    kwargs = [{"amp": 1.0, "R_sersic": 0.2, "n_sersic": 2.0, "center_x": 0.0, "center_y": 0.0},
              {"amp": 2.0, "sigma": 0.1, "center_x": 0.1, "center_y": 0.0},
              {"amp": [1.0, 2.0], "sigma": [0.1, 0.3], "center_x": 0.0, "center_y": 0.0},
              {"amp": np.ones(6), "n_max": 2, "beta": 0.2, "center_x": 0.0, "center_y": 0.0}]
    x, y = np.linspace(-1, 1, 30), np.linspace(1, -1, 30)
    patched, n = model.functions_split(x, y, kwargs)
    original, n_original = originals["functions_split"](model, x, y, kwargs)
    assert n == n_original == 10
    np.testing.assert_array_equal(np.array(patched), np.array(original))
    assert model.num_param_linear_list(kwargs) == originals["num_param_linear_list"](model, kwargs) == [1, 1, 2, 6]
    assert model.total_flux(kwargs[:3], k=[0, 1, 2]) == originals["total_flux"](model, kwargs[:3], k=[0, 1, 2])
    assert model.check_positive_flux_profile(kwargs) is originals["check_positive_flux_profile"](model, kwargs)
    default = LightModel(["SERSIC"])
    assert default.surface_brightness(0.1, 0.2, [kwargs[0]]) == pytest.approx(
        LightModel(["SERSIC"], profile_kwargs_list=[{}]).surface_brightness(0.1, 0.2, [kwargs[0]])
    )


def test_register_is_idempotent_and_checks_lenstronomy(monkeypatch):
    lenstronomy_vae.register()
    lenstronomy_vae.register()
    assert lenstronomy_patch.is_registered()
    wrapped = LinearBasis.__dict__["functions_split"]
    assert not hasattr(wrapped.__lenstronomy_vae_original__, "__lenstronomy_vae_original__")
    assert lenstronomy.LightModel.light_model_base._MODELS_SUPPORTED.count("VAE") == 1

    monkeypatch.setattr(lenstronomy, "__version__", "1.15.0")
    with pytest.raises(lenstronomy_patch.LenstronomyCompatibilityError, match=r">=1.14,<1.15; lenstronomy 1.15.0"):
        lenstronomy_vae.register()
    monkeypatch.undo()

    def update_linear(self, param, i, kwargs_list, new_argument=None):
        raise AssertionError("never called")

    monkeypatch.setattr(LinearBasis, "update_linear", update_linear)
    with pytest.raises(lenstronomy_patch.LenstronomyCompatibilityError,
                       match=r"LinearBasis.update_linear has parameters .*'new_argument'"):
        lenstronomy_vae.register()


def test_register_checks_what_lm_reads_from_lenstronomy(monkeypatch):
    error = lenstronomy_patch.LenstronomyCompatibilityError
    monkeypatch.delattr(Param, "num_param")  # a method
    with pytest.raises(error, match=r"lenstronomy 1\.14\.\d+: Param\.num_param no longer exists; the 'LM' step"):
        lenstronomy_vae.register()
    monkeypatch.undo()

    original_init = ImageLikelihood.__init__

    def init_with_renamed_attribute(self, *args, **kwargs):  # an instance attribute set in __init__
        original_init(self, *args, **kwargs)
        self.image_model = self.__dict__.pop("imSim")

    monkeypatch.setattr(ImageLikelihood, "__init__", init_with_renamed_attribute)
    with pytest.raises(error, match=r"ImageLikelihood\.imSim no longer exists"):
        lenstronomy_vae.register()
    monkeypatch.undo()

    # An instance attribute that Likelihood stores outside __init__ (in _class_instances).
    monkeypatch.delattr(Likelihood, "_class_instances")
    with pytest.raises(error, match=r"Likelihood\.image_likelihood no longer exists"):
        lenstronomy_vae.register()
    monkeypatch.undo()

    signature = inspect.signature(Likelihood.__init__)
    new_term = inspect.Parameter("quasar_likelihood", inspect.Parameter.KEYWORD_ONLY, default=False)
    monkeypatch.setattr(Likelihood.__init__, "__signature__",
                        signature.replace(parameters=[*signature.parameters.values(), new_term]), raising=False)
    with pytest.raises(error, match=r"kwargs_likelihood keys of Likelihood differ .*new: \['quasar_likelihood'\]"):
        lenstronomy_vae.register()
    monkeypatch.undo()
    lenstronomy_vae.register()
    assert lenstronomy_patch.is_registered()


def test_image_model_and_linear_solver_recover_flux(galaxy_model_path):
    data, psf, lens, source = simulate(galaxy_model_path)
    fit = ImageLinearFit(data, psf, lens, source, kwargs_numerics=NUMERICS)
    kwargs_source = [{**SOURCE, "amp": 1.0}]
    model, error_map, cov_param, param = fit.image_linear_solve(kwargs_lens=SIS, kwargs_source=kwargs_source)
    assert param[0] == pytest.approx(SOURCE["amp"], rel=1e-2)
    assert kwargs_source[0]["amp"] == pytest.approx(SOURCE["amp"], rel=1e-2)
    residuals = (model - data.data) / 1e-3
    assert np.mean(residuals**2) < 2.0


def test_sim_api_magnitude_to_amplitude(galaxy_model_path):
    kwargs_band = {"pixel_scale": 0.05, "exposure_time": 1000.0, "magnitude_zero_point": 25.0,
                   "read_noise": 1.0, "ccd_gain": 1.0, "sky_brightness": 22.0, "num_exposures": 1,
                   "seeing": 0.1, "psf_type": "GAUSSIAN"}
    kwargs_model = {"lens_model_list": ["SIS"], "source_light_model_list": ["VAE"],
                    "source_light_profile_kwargs_list": [{"model": galaxy_model_path}],
                    "lens_light_model_list": ["VAE"],
                    "lens_light_profile_kwargs_list": [{"model": galaxy_model_path}]}
    sim = SimAPI(num_pix=32, kwargs_single_band=kwargs_band, kwargs_model=kwargs_model)
    source_mag = {k: v for k, v in SOURCE.items() if k != "amp"}
    lens_light, source, _ = sim.magnitude2amplitude(
        kwargs_lens_light_mag=[{**source_mag, "magnitude": 21.0}],
        kwargs_source_mag=[{**source_mag, "magnitude": 20.0}],
    )
    assert source[0]["amp"] == pytest.approx(10 ** (-0.4 * (20.0 - 25.0)))
    assert lens_light[0]["amp"] == pytest.approx(10 ** (-0.4 * (21.0 - 25.0)))
    # The (unlensed) lens light image holds the flux of its magnitude.
    image = sim.image_model_class(NUMERICS).image(SIS, source, kwargs_lens_light=lens_light, source_add=False)
    assert image.sum() == pytest.approx(10 ** 1.6, rel=1e-2)


def test_kwargs_model_entry_points(galaxy_model_path):
    kwargs_model = {"lens_model_list": ["SIS"], "source_light_model_list": ["VAE", "SERSIC"],
                    "source_light_profile_kwargs_list": [{"model": galaxy_model_path}, None],
                    "lens_light_model_list": ["VAE"],
                    "lens_light_profile_kwargs_list": [{"model": galaxy_model_path}]}
    before = copy.deepcopy(kwargs_model)
    _, source, lens_light, _, _ = class_creator.create_class_instances(**kwargs_model)
    assert isinstance(source.func_list[0], VAEProfile) and isinstance(lens_light.func_list[0], VAEProfile)

    init, sigma, fixed, lower, upper = vae_source_params(galaxy_model_path, fix_scale=True)
    sersic = {"R_sersic": 0.1, "n_sersic": 1.0, "center_x": 0.0, "center_y": 0.0}
    param = Param(kwargs_model, kwargs_fixed_lens=[{}], kwargs_fixed_source=[fixed, {}],
                  kwargs_fixed_lens_light=[dict(fixed)], kwargs_lower_source=[lower, {**sersic, "R_sersic": 0.01}],
                  kwargs_upper_source=[upper, {**sersic, "R_sersic": 1.0}], linear_solver=True)
    # Sampled: SIS (3); VAE source and lens light without amp and scale (centre, phi_G, 4 latents: 7
    # each); Sersic without amp (4).
    assert param.num_param()[0] == 3 + 7 + 4 + 7
    assert param.num_param_linear() == 3
    args = param.kwargs2args(kwargs_lens=SIS, kwargs_source=[init, {**sersic, "amp": 1.0}], kwargs_lens_light=[init])
    kwargs = param.args2kwargs(args)
    assert kwargs["kwargs_source"][0]["z_3"] == init["z_3"] and kwargs["kwargs_source"][0]["scale"] == 0.05
    assert kwargs_model == before


def test_pickled_light_model_works_in_a_fresh_state(galaxy_model_path):
    model = LightModel(["VAE"], profile_kwargs_list=[{"model": galaxy_model_path}])
    x, y = np.linspace(-0.3, 0.3, 40), np.linspace(0.2, -0.2, 40)
    expected = model.functions_split(x, y, [SOURCE])
    clone = pickle.loads(pickle.dumps(model))
    assert clone.profile_type_list == ["VAE"]
    result = clone.functions_split(x, y, [SOURCE])
    assert result[1] == expected[1]
    np.testing.assert_array_equal(result[0][0], expected[0][0])


def fitting_inputs(model_path, num_pix=20):
    data, psf, _, _ = simulate(model_path, num_pix=num_pix, noise_rms=0.05)
    kwargs_data_joint = {
        "multi_band_list": [[{**simulation_util.data_configure_simple(num_pix, 0.05, 1e4, 0.05),
                              "image_data": data.data}, {"psf_type": "GAUSSIAN", "fwhm": 0.1}, NUMERICS]],
        "multi_band_type": "single-band",
    }
    kwargs_model = {"lens_model_list": ["SIS"], "source_light_model_list": ["VAE"],
                    "source_light_profile_kwargs_list": [{"model": model_path}]}
    source = vae_source_params(model_path, center_x=0.0, center_y=0.0, fix_scale=True)
    kwargs_params = {
        "lens_model": [SIS, [{"theta_E": 0.05, "center_x": 0.02, "center_y": 0.02}], [{}],
                       [{"theta_E": 0.1, "center_x": -0.5, "center_y": -0.5}],
                       [{"theta_E": 1.0, "center_x": 0.5, "center_y": 0.5}]],
        "source_model": [[s] for s in source],
    }
    kwargs_likelihood = {"check_positive_flux": True, "prior_source": latent_prior(0, model_path)}
    return kwargs_data_joint, kwargs_model, {}, kwargs_likelihood, kwargs_params


@pytest.mark.parametrize("thread_count", [1, pytest.param(2, marks=pytest.mark.slow)])
def test_fitting_sequence_pso(galaxy_model_path, thread_count):
    fitting = FittingSequence(*fitting_inputs(galaxy_model_path))
    chain = fitting.fit_sequence(
        [["PSO", {"sigma_scale": 1.0, "n_particles": 6, "n_iterations": 3, "threadCount": thread_count}]]
    )
    assert np.all(np.isfinite(chain[0][1][0]))  # log-likelihood history
    best = fitting.best_fit()
    assert set(best["kwargs_source"][0]) == set(VAEProfile(galaxy_model_path).param_names)
    assert np.isfinite(fitting.best_fit_likelihood())


@pytest.mark.parametrize("multi_band_type", ["multi-linear", "joint-linear"])
def test_a_multi_band_vae_source_gets_its_own_band_in_each_imaging_band(multiband_model_path, multi_band_type):
    """index_source_light_model_list picks one VAE per band; each must decode its own band of the model."""
    num_pix, pixel_scale = 16, 0.05
    origin = -(num_pix - 1) / 2 * pixel_scale
    psf = {"psf_type": "GAUSSIAN", "fwhm": 0.1}
    band_list = []
    for seed in (1, 2):
        image = np.random.default_rng(seed).normal(0.0, 0.01, (num_pix, num_pix))
        data = {"image_data": image, "noise_map": np.full(image.shape, 0.01), "ra_at_xy_0": origin,
                "dec_at_xy_0": origin, "transform_pix2angle": np.diag([pixel_scale, pixel_scale])}
        band_list.append([data, psf, {"supersampling_factor": 1}])
    kwargs_model = {"source_light_model_list": ["VAE", "VAE"], "lens_model_list": ["SIS"],
                    "source_light_profile_kwargs_list": [{"model": multiband_model_path, "band": "g"},
                                                         {"model": multiband_model_path, "band": "r"}],
                    "index_source_light_model_list": [[0], [1]]}
    source = [vae_source_params(multiband_model_path, band=band, fix_phi_G=True) for band in ("g", "r")]
    params = {"lens_model": [[{"theta_E": 0.3, "center_x": 0.0, "center_y": 0.0}], [{"theta_E": 0.1,
              "center_x": 0.05, "center_y": 0.05}], [{}], [{"theta_E": 0.0, "center_x": -1, "center_y": -1}],
              [{"theta_E": 2.0, "center_x": 1, "center_y": 1}]],
              "source_model": [[part[k] for part in source] for k in range(5)]}
    fitting = FittingSequence({"multi_band_list": band_list, "multi_band_type": multi_band_type}, kwargs_model, {},
                              {}, params)
    image_fit = fitting.likelihood_class.image_likelihood.imSim
    models = [band_model.SourceModel.func_list for band_model in image_fit._image_model_list]
    assert [[profile.band for profile in band] for band in models] == [["g"], ["r"]]
    args = fitting.param_class.kwargs2args(**fitting._updateManager.parameter_state)
    assert np.isfinite(fitting.likelihood_class.logL(args))
