"""The VAEProfile light profile: units, geometry, caching, pickling, errors, fitting helpers."""

import pickle
import zipfile

import numpy as np
import pytest

from lenstronomy_vae import ModelFileError, VAEProfile, latent_prior, vae_source_params


def grid(half_width, step):
    """Flattened square grid of pixel centres (x, y), arcsec."""
    axis = np.arange(-half_width + step / 2, half_width, step)
    x, y = np.meshgrid(axis, axis)
    return x.ravel(), y.ravel()


def stamp_centres(profile, scale):
    """Coordinates of the decoder's pixel centres at ``scale``, as (N, N) arrays (row ↔ y)."""
    n = profile.galaxy_model.image_size
    axis = (np.arange(n) - (n - 1) / 2) * scale
    return np.meshgrid(axis, axis)


def test_parameters_follow_lenstronomy_conventions(galaxy_model_path):
    profile = VAEProfile(galaxy_model_path)
    latent_names = ["z_0", "z_1", "z_2", "z_3"]
    assert profile.param_names == ["amp", "center_x", "center_y", "scale", "phi_G", *latent_names]
    assert len(profile.param_names_latex) == len(profile.param_names)
    for name in profile.param_names:
        assert profile.lower_limit_default[name] < profile.upper_limit_default[name]
    assert profile.lower_limit_default["scale"] < 0.05 < profile.upper_limit_default["scale"]
    assert profile.total_flux(amp=12.5, scale=0.1, z_0=0.0) == 12.5


def test_function_is_flux_normalised(galaxy_model_path, latents):
    profile = VAEProfile(galaxy_model_path)
    x, y = grid(half_width=1.5, step=0.01)
    for scale, phi_G, center in [(0.05, 0.0, (0.0, 0.0)), (0.08, 0.7, (0.1, -0.2))]:
        flux = profile.function(x, y, amp=37.0, center_x=center[0], center_y=center[1],
                                scale=scale, phi_G=phi_G, **latents)
        assert np.all(flux >= 0)
        assert np.sum(flux) * 0.01**2 == pytest.approx(37.0, rel=1e-2)


def test_function_at_pixel_centres_is_the_stamp(galaxy_model_path, latents):
    profile = VAEProfile(galaxy_model_path)
    stamp = profile.normalized_stamp(**latents)
    assert stamp.sum() == pytest.approx(1.0)
    x, y = stamp_centres(profile, scale=0.07)
    surface_brightness = profile.function(x, y, amp=3.0, scale=0.07, **latents)
    np.testing.assert_allclose(surface_brightness * 0.07**2, 3.0 * stamp, rtol=1e-10, atol=1e-15)
    # A shifted centre moves the image rigidly.
    shifted = profile.function(x + 0.3, y - 0.1, amp=3.0, center_x=0.3, center_y=-0.1, scale=0.07, **latents)
    np.testing.assert_allclose(shifted, surface_brightness, rtol=1e-9, atol=1e-12)


def test_rotation_by_quarter_turn_is_counter_clockwise(galaxy_model_path, latents):
    profile = VAEProfile(galaxy_model_path)
    stamp = profile.normalized_stamp(**latents)
    n = stamp.shape[0]
    x, y = stamp_centres(profile, scale=0.05)
    rotated = profile.function(x, y, amp=1.0, scale=0.05, phi_G=np.pi / 2, **latents) * 0.05**2
    # A stamp feature at (+x, 0) moves to (0, +x): rotated[row, col] = stamp[n-1-col, row].
    expected = np.array([[stamp[n - 1 - col, row] for col in range(n)] for row in range(n)])
    np.testing.assert_allclose(rotated, expected, rtol=1e-9, atol=1e-15)


def test_zero_outside_stamp_and_scalar_input(galaxy_model_path, latents):
    profile = VAEProfile(galaxy_model_path)
    half_extent = 0.05 * (profile.galaxy_model.image_size + 1) / 2  # stamp plus the zero ring
    far = np.array([half_extent + 1e-6, 5.0, -3.0])
    assert np.all(profile.function(far, far * 0, amp=1.0, scale=0.05, **latents) == 0)
    assert np.all(profile.function(far * 0, -far, amp=1.0, scale=0.05, **latents) == 0)
    value = profile.function(0.01, -0.02, amp=1.0, scale=0.05, **latents)
    assert np.ndim(value) == 0 and value > 0
    assert np.isnan(profile.function(np.array([np.nan, 0.0]), np.zeros(2), 1.0, **latents)[0])


def test_default_scale_is_model_pixel_scale(galaxy_model_path, latents):
    profile = VAEProfile(galaxy_model_path)
    x, y = grid(half_width=0.5, step=0.05)
    np.testing.assert_array_equal(
        profile.function(x, y, amp=1.0, **latents), profile.function(x, y, amp=1.0, scale=0.05, **latents)
    )


def test_stamp_is_decoded_once_per_latent_vector(galaxy_model_path, latents):
    profile = VAEProfile(galaxy_model_path)
    x, y = grid(half_width=0.5, step=0.05)
    first = profile.function(x, y, amp=1.0, scale=0.05, **latents)
    for _ in range(3):
        profile.function(x, y, amp=2.0, center_x=0.1, scale=0.06, phi_G=0.3, **latents)
    info = profile._stamp.cache_info()
    assert (info.misses, info.hits) == (1, 3)
    other = profile.function(x, y, amp=1.0, scale=0.05, **{**latents, "z_0": -1.0})
    assert not np.allclose(first, other)
    np.testing.assert_array_equal(profile.function(x, y, amp=1.0, scale=0.05, **latents), first)


def test_positions_reused_only_where_the_positions_and_geometry_are_the_same(galaxy_model_path, latents):
    profile = VAEProfile(galaxy_model_path)
    x, y = grid(half_width=0.5, step=0.05)
    x2 = x + 0.013
    geometries = [dict(center_x=0.0, scale=0.05), dict(center_x=0.02, scale=0.05), dict(center_x=0.0, scale=0.04),
                  dict(center_x=0.0, scale=0.05, phi_G=0.4)]
    expected = [[profile.function(xs, y, amp=1.0, **geometry, **latents) for xs in (x, x2)] for geometry in geometries]
    with profile.positions_reused():
        for _ in range(2):
            for geometry, values in zip(geometries, expected):
                for xs, value in zip((x, x2), values):
                    np.testing.assert_array_equal(profile.function(xs, y, amp=1.0, **geometry, **latents), value)
        # The same positions with another stamp: its own values.
        stamp = profile.normalized_stamp(**latents)[::-1]
        with profile.substituted_stamp(stamp):
            flipped = profile.function(x, y, amp=1.0, scale=0.05, **latents)
    with profile.substituted_stamp(stamp):
        np.testing.assert_array_equal(profile.function(x, y, amp=1.0, scale=0.05, **latents), flipped)
    assert not np.allclose(flipped, expected[0][0])


def test_positions_reused_for_copies_of_the_positions(galaxy_model_path, latents, monkeypatch):
    # lenstronomy's LightModel.surface_brightness hands every profile a fresh copy of x and y, so
    # the 'LM' Jacobian's derivative images reach the profile with new arrays of the same values.
    profile = VAEProfile(galaxy_model_path)
    x, y = grid(half_width=0.5, step=0.05)
    computed = []
    interpolation_weights = VAEProfile._interpolation_weights

    def counted(*args):
        computed.append(1)
        return interpolation_weights(*args)

    monkeypatch.setattr(VAEProfile, "_interpolation_weights", staticmethod(counted))
    with profile.positions_reused():
        first = profile.function(x, y, amp=1.0, scale=0.05, **latents)
        again = profile.function(x.copy(), y.copy(), amp=1.0, scale=0.05, **latents)
        assert len(computed) == 1
        moved = profile.function(x + 0.013, y.copy(), amp=1.0, scale=0.05, **latents)
        assert len(computed) == 2
    np.testing.assert_array_equal(again, first)
    assert not np.allclose(moved, first)


def test_pickle_round_trip(galaxy_model_path, latents):
    profile = VAEProfile(galaxy_model_path)
    x, y = grid(half_width=0.5, step=0.03)
    expected = profile.function(x, y, amp=5.0, center_x=0.02, scale=0.04, phi_G=0.4, **latents)
    data = pickle.dumps(profile)
    assert len(data) < 1000  # the model itself does not travel
    clone = pickle.loads(data)
    assert (clone.model, clone.band, clone.param_names) == (profile.model, profile.band, profile.param_names)
    np.testing.assert_array_equal(
        clone.function(x, y, amp=5.0, center_x=0.02, scale=0.04, phi_G=0.4, **latents), expected
    )


def test_latent_errors_name_the_problem(galaxy_model_path, latents):
    profile = VAEProfile(galaxy_model_path)
    missing = {k: v for k, v in latents.items() if k != "z_2"}
    with pytest.raises(ValueError, match=r"4-dimensional latent space.*missing latents \['z_2'\]"):
        profile.function(0.0, 0.0, amp=1.0, **missing)
    with pytest.raises(ValueError, match=r"unknown parameters \['R_sersic', 'z_4'\]"):
        profile.function(0.0, 0.0, amp=1.0, z_4=0.0, R_sersic=1.0, **latents)
    with pytest.raises(ValueError, match="scale must be a positive"):
        profile.function(0.0, 0.0, amp=1.0, scale=0.0, **latents)


def test_model_file_errors(tmp_path, galaxy_model_path):
    with pytest.raises(ModelFileError, match="unknown model 'no_such_model'"):
        VAEProfile("no_such_model")
    with pytest.raises(ModelFileError, match="does not exist"):
        VAEProfile(str(tmp_path / "missing.keras"))
    garbage = tmp_path / "garbage.keras"
    garbage.write_bytes(b"\x00not a keras archive\xff" * 10)
    with pytest.raises(ModelFileError, match="not a Keras"):
        VAEProfile(str(garbage))
    truncated = tmp_path / "truncated.keras"
    with zipfile.ZipFile(galaxy_model_path) as source, zipfile.ZipFile(truncated, "w") as target:
        target.writestr("metadata.json", source.read("metadata.json"))
    with pytest.raises(ModelFileError, match="could not load"):
        VAEProfile(str(truncated))


def test_band_selection(multiband_model_path, galaxy_model_path, latents):
    with pytest.raises(ValueError, match=r"has 3 bands \('g', 'r', 'i'\).*pass band="):
        VAEProfile(multiband_model_path)
    with pytest.raises(ValueError, match=r"band 'z' is not in model.*\('g', 'r', 'i'\)"):
        VAEProfile(multiband_model_path, band="z")
    with pytest.raises(ValueError, match="band index 3 out of range"):
        VAEProfile(multiband_model_path, band=3)
    with pytest.raises(ValueError, match="band 'g' is not in model"):
        VAEProfile(galaxy_model_path, band="g")
    assert VAEProfile(multiband_model_path, band=1).band == "r"
    assert VAEProfile(multiband_model_path, band=-1).band == "i"
    g = VAEProfile(multiband_model_path, band="g").normalized_stamp(**latents)
    i = VAEProfile(multiband_model_path, band="i").normalized_stamp(**latents)
    assert g.sum() == pytest.approx(1.0) and i.sum() == pytest.approx(1.0)
    assert not np.allclose(g, i)
    assert pickle.loads(pickle.dumps(VAEProfile(multiband_model_path, band="i"))).band == "i"


def test_vae_source_params(galaxy_model_path):
    init, sigma, fixed, lower, upper = vae_source_params(
        galaxy_model_path, center_x=0.1, latents=[0.5, 0, 0, -0.5], fix_scale=True
    )
    names = VAEProfile(galaxy_model_path).param_names
    for kwargs in (init, sigma, lower, upper):
        assert sorted(kwargs) == sorted(names)
    assert init["center_x"] == 0.1 and init["z_0"] == 0.5 and init["scale"] == 0.05
    assert fixed == {"scale": 0.05}
    assert all(lower[n] <= init[n] <= upper[n] and sigma[n] > 0 for n in names)
    _, _, fixed, _, _ = vae_source_params(galaxy_model_path, phi_G=0.2, fix_phi_G=True, fix_latents=True)
    assert fixed == {"phi_G": 0.2, "z_0": 0.0, "z_1": 0.0, "z_2": 0.0, "z_3": 0.0}
    with pytest.raises(ValueError, match="4-dimensional latent space; got 3"):
        vae_source_params(galaxy_model_path, latents=[0, 0, 0])
    with pytest.raises(ValueError, match=r"scale=5.0 not in"):
        vae_source_params(galaxy_model_path, scale=5.0)


def test_latent_prior(galaxy_model_path):
    assert latent_prior(2, galaxy_model_path) == [[2, f"z_{i}", 0.0, 1.0] for i in range(4)]
    assert latent_prior(0, galaxy_model_path, sigma=0.5) == [[0, f"z_{i}", 0.0, 0.5] for i in range(4)]
    for bad in (0.0, -1.0, float("nan"), "1", True):
        with pytest.raises(ValueError, match="sigma must be a positive number"):
            latent_prior(0, galaxy_model_path, sigma=bad)


def test_the_large_shipped_model_is_a_flux_normalised_light_profile():
    from lenstronomy.LightModel.light_model import LightModel

    light = LightModel(["VAE"], profile_kwargs_list=[{"model": "hst64_large"}])
    latents = {f"z_{i}": 0.3 * np.sin(i) for i in range(32)}
    x, y = grid(half_width=1.5, step=0.01)
    flux = light.surface_brightness(x, y, [{"amp": 5.0, "center_x": 0.1, "center_y": 0.0, "scale": 0.03,
                                            "phi_G": 0.0, **latents}])
    assert np.all(flux >= 0) and np.sum(flux) * 0.01**2 == pytest.approx(5.0, rel=1e-2)
