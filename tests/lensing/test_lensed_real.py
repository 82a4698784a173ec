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


def test_half_light_radius_of_a_gaussian_source(script):
    sigma_pixels, scale = 4.0, 0.03
    y, x = np.mgrid[-30:31, -30:31].astype(float)
    stamp = np.exp(-(x**2 + y**2) / (2 * sigma_pixels**2))
    expected = np.sqrt(2 * np.log(2)) * sigma_pixels * scale  # arcsec
    assert script.half_light_radius(stamp, scale) == pytest.approx(expected, abs=0.5 * scale)
    assert script.half_light_radius(stamp, 2 * scale) == pytest.approx(2 * expected, abs=scale)


def test_flux_is_summarised_per_bin_of_the_truths_half_light_radius(script):
    small, middle = script.SIZE_BIN_EDGES
    radii_and_fluxes = [(0.5 * small, 1.0), (0.9 * small, 1.2), (0.5 * (small + middle), 0.9), (2 * middle, 1.5),
                        (3 * middle, 1.3), (4 * middle, 1.1)]
    rows = [{"snr": 30.0, "source_half_light_radius": radius,
             "models": {"M": {"source_flux": flux, "source_flux_in_footprint": flux - 0.1}}}
            for radius, flux in radii_and_fluxes]
    del rows[2]["models"]["M"]["source_flux_in_footprint"]  # a fit without the in-footprint figure
    bins = script.flux_by_size(rows, "M")
    assert [entry["galaxies"] for entry in bins] == [2, 1, 3]
    assert [entry["half_light_radius"] for entry in bins] == [[0.0, small], [small, middle], [middle, None]]
    assert [entry["median_source_flux"] for entry in bins] == pytest.approx([1.1, 0.9, 1.3])
    assert bins[0]["median_source_flux_in_footprint"] == pytest.approx(1.0)
    assert bins[1]["median_source_flux_in_footprint"] is None
    assert bins[2]["median_source_flux_in_footprint"] == pytest.approx(1.2)
    rows = [row for row in rows if row["source_half_light_radius"] < middle]
    assert script.flux_by_size(rows, "M")[2] == {"half_light_radius": [middle, None], "galaxies": 0,
                                                  "median_source_flux": None, "median_source_flux_in_footprint": None}


def test_cleaning_keeps_a_compact_galaxy_and_cuts_the_wings_of_an_extended_one(script):
    settings = script.Settings()
    y, x = np.mgrid[-32:32, -32:32] + 0.5
    radius = np.hypot(x, y)
    compact = np.exp(-radius**2 / (2 * 2.0**2))  # Gaussian, σ 2 px: no wings
    extended = np.exp(-radius / 6.0)  # exponential disk, scale 6 px: wings to the stamp's edge
    stamps = np.array([compact, extended, extended])
    sigmas = [0.01, 0.01, 0.1]  # noise σ in units of the peaks
    kept, radii = [], []
    for stamp, sigma in zip(stamps, sigmas):
        k, r = script.light_kept_by_cleaning(stamp[None], 0.03, sigma, settings, np.random.default_rng(0))
        kept.append(k[0])
        radii.append(r[0])
    assert kept[0] > 0.99
    assert 0.5 < kept[2] < kept[1] - 0.1 and kept[1] < 0.99  # the wings below 1.5σ go, more the noisier the stamp
    assert radii[1] == radii[2] > 2 * radii[0]  # arcsec, of the noise-free stamps
    again = script.light_kept_by_cleaning(stamps[2:], 0.03, 0.1, settings, np.random.default_rng(0))
    assert again[0][0] == kept[2]


def test_cleaning_keeps_a_clumpy_galaxy_whole_and_removes_a_detached_neighbour(script):
    y, x = np.mgrid[-48:48, -48:48] + 0.5
    disk = np.exp(-np.hypot(x, y) / 5.0)  # exponential disk, scale 5 px, peak 1
    clumps = sum(3.0 * np.exp(-((x - cx) ** 2 + y**2) / (2 * 1.5**2)) for cx in (-8.0, 8.0))  # star-forming knots
    neighbour = np.exp(-((x - 32) ** 2 + (y - 32) ** 2) / (2 * 2.0**2))
    stamp = disk + clumps + neighbour + np.random.default_rng(0).normal(0.0, 0.02, x.shape)
    cleaned, removed = script.noise_outside_footprint_removed(stamp, x.shape)
    kept = cleaned[np.hypot(x, y) < 20].sum() / (disk + clumps).sum()
    assert kept > 0.9  # knots and disk to its 1.5σ isophote: not the central piece of a deblended galaxy
    assert not cleaned[np.hypot(x - 32, y - 32) < 6].any()  # the neighbour goes with the noise
    assert removed == pytest.approx(1.0 - cleaned.sum() / stamp.sum())
