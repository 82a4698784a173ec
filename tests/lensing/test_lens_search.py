"""The lens search start of a 'VAE' lens fit: SHAPELETS PSO, the VAE placed on the lens found, then 'LM'."""

import numpy as np
from lenstronomy.Workflow.fitting_sequence import FittingSequence

from lenstronomy_vae.lensing import latent_prior, lens_params_start, vae_source_params
from lenstronomy_vae.lensing.lens_fit import (
    SEARCH_SHAPELETS_N_MAX,
    WARM_START_LM_TOLERANCE,
    FitSettings,
    placement_steps,
    run_warm_starts,
    shapelet_lens_search,
    shapelet_search_params,
    warm_start_steps,
)
from lenstronomy_vae.lensing.lens_simulation import LensSettings, simulate_lens

LENS = LensSettings(num_pix=48, pixel_scale=0.05, source_flux=80.0)


def clumpy_source(size=64, scale=0.03):
    """A faint disk with three bright knots on one side: a source the mean galaxy does not look like."""
    offsets = (np.arange(size) - (size - 1) / 2) * scale
    x, y = np.meshgrid(offsets, offsets)
    stamp = 0.3 * np.exp(-np.hypot(x, y) / 0.12)
    for knot_x, knot_y in ((0.18, 0.05), (0.25, -0.12), (0.08, 0.2)):
        stamp += np.exp(-((x - knot_x) ** 2 + (y - knot_y) ** 2) / (2 * 0.03**2))
    return stamp


def data_joint(simulation):
    return {"multi_band_list": [[simulation.kwargs_data, simulation.kwargs_psf, simulation.kwargs_numerics]],
            "multi_band_type": "single-band"}


def test_shapelet_lens_search_finds_the_lens_of_a_clumpy_source_on_the_image_pixels(galaxy_model_path):
    simulation = simulate_lens(seed=1, settings=LENS, source_stamp=clumpy_source(), source_pixel_scale=0.03)
    source = vae_source_params(model=galaxy_model_path, fix_phi_G=True)
    shapelets = shapelet_search_params(source, pixel_scale=0.03, image_size=64)
    assert shapelets[2] == {"n_max": SEARCH_SHAPELETS_N_MAX}
    assert shapelets[3]["beta"] < shapelets[0]["beta"] < shapelets[4]["beta"]
    np.random.seed(0)
    search = shapelet_lens_search(data_joint(simulation), ["SIE", "SHEAR"], lens_params_start(), shapelets,
                                  {"sigma_scale": 1.0, "n_particles": 20, "n_iterations": 40})
    assert abs(search.best_fit()["kwargs_lens"][0]["theta_E"] - LENS.lens["theta_E"]) < 0.03
    assert search.multi_band_list[0][2]["supersampling_factor"] == 1
    assert simulation.kwargs_numerics["supersampling_factor"] == 3  # the caller's numerics are left as they were


def test_placement_holds_the_lens_and_the_latents_then_lm_frees_them(galaxy_model_path):
    simulation = simulate_lens(seed=2, settings=LENS)
    lens = lens_params_start({"theta_E": 0.8})
    source = vae_source_params(model=galaxy_model_path, fix_phi_G=True)
    fitting = FittingSequence(
        data_joint(simulation),
        {"lens_model_list": ["SIE", "SHEAR"], "source_light_model_list": ["VAE"],
         "source_light_profile_kwargs_list": [{"model": galaxy_model_path}]},
        {}, {"check_positive_flux": True, "prior_source": latent_prior(0, model=galaxy_model_path)},
        {"lens_model": lens, "source_model": [[part] for part in source]},
    )
    free = [sorted(set(init) - set(fixed)) for init, fixed in zip(lens[0], lens[2])]
    *place, lm_step = placement_steps(4, free, {"sigma_scale": 1.0, "n_particles": 6, "n_iterations": 5}, 5)
    np.random.seed(0)
    fitting.fit_sequence(place)
    placed = fitting.best_fit()
    assert placed["kwargs_lens"] == [{**lens[0][0]}, {**lens[0][1]}]
    assert all(placed["kwargs_source"][0][f"z_{i}"] == 0.0 for i in range(4))
    assert (placed["kwargs_source"][0]["center_x"], placed["kwargs_source"][0]["scale"]) != (0.0, source[0]["scale"])
    fitting.fit_sequence([lm_step])
    fitted = fitting.best_fit()
    assert fitted["kwargs_lens"][0]["theta_E"] != 0.8
    assert any(fitted["kwargs_source"][0][f"z_{i}"] != 0.0 for i in range(4))


def test_warm_starts_alternate_the_mean_galaxy_and_the_lens_search(galaxy_model_path):
    simulation = simulate_lens(seed=3, settings=LENS)
    source = vae_source_params(model=galaxy_model_path, fix_phi_G=True)
    settings = FitSettings(pso_particles=12, pso_iterations=3, starts=3, lm_iterations=2)
    fittings, chain_lists, stages = run_warm_starts(
        data_joint(simulation),
        {"lens_model_list": ["SIE", "SHEAR"], "source_light_model_list": ["VAE"],
         "source_light_profile_kwargs_list": [{"model": galaxy_model_path}]},
        {"check_positive_flux": True, "prior_source": latent_prior(0, model=galaxy_model_path)},
        {"lens_model": lens_params_start(), "source_model": [[part] for part in source]}, settings, seed=0)
    assert len(fittings) == len(chain_lists) == 3
    assert [(stage["name"], stage["start"]) for stage in stages] == [
        ("PSO", 1), ("LM", 1), ("lens search", 2), ("placement", 2), ("LM", 2), ("PSO", 3), ("LM", 3)]
    assert [stage.get("particles") for stage in stages if stage["name"] != "LM"] == [4, 4, 4, 4]
    assert stages[2]["source"] == f"SHAPELETS n_max {SEARCH_SHAPELETS_N_MAX}"
    assert [stage["iterations"] for stage in stages if stage["name"] == "placement"] == [3]


def test_the_warm_starts_lm_tolerance_reaches_both_kinds_of_start():
    assert warm_start_steps(4, {}, 7)[-1] == ["LM", {"max_iterations": 7}]  # 'LM's own default
    assert warm_start_steps(4, {}, 7, lm_tolerance=3e-5)[-1] == ["LM", {"max_iterations": 7, "tolerance": 3e-5}]
    assert placement_steps(4, [["theta_E"], []], {}, 7, 3e-5)[-1] == ["LM", {"max_iterations": 7, "tolerance": 3e-5}]
    assert FitSettings().lm_tolerance == WARM_START_LM_TOLERANCE
