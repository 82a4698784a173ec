"""Image, shape, flux and shear-bias metrics against hand-computed values."""

import galsim
import numpy as np
import pytest
from scipy.ndimage import gaussian_filter
from scipy.stats import norm

from lenstronomy_vae.evaluation.metrics import (
    SSIM_BORDER,
    adaptive_shapes,
    binned_statistics,
    cosine_similarities,
    cosine_similarity,
    flux_errors,
    robust_sigma,
    shape_errors,
    shear_bias,
    ssim,
    ssim_scores,
)
from lenstronomy_vae.sims.shapes import adaptive_moments_shape

SCALE = 0.2  # arcsec per pixel
MAD_TO_SIGMA = 1 / norm.ppf(0.75)  # 1.482602…: the median absolute deviation of a unit Gaussian is Φ⁻¹(3/4)


def sheared_gaussian(g1, g2, offset=(0.0, 0.0), sigma=0.6, flux=1.0):
    """A 45×45-pixel image of an elliptical Gaussian (no pixel convolution, so its moments are exact)."""
    profile = galsim.Gaussian(sigma=sigma, flux=flux).shear(g1=g1, g2=g2)
    return profile.drawImage(nx=45, ny=45, scale=SCALE, method="no_pixel", offset=offset).array


def test_cosine_similarity_hand_values():
    a = np.array([1.0, 2.0, 3.0])
    assert cosine_similarity(a, a) == pytest.approx(1.0)
    assert cosine_similarity(a, -a) == pytest.approx(-1.0)
    assert cosine_similarity(np.eye(2), np.fliplr(np.eye(2))) == pytest.approx(0.0)
    # (1·3 + 2·1 + 0·1 + 1·0) / (√6 · √11)
    pair = np.array([[1.0, 2.0], [0.0, 1.0]]), np.array([[3.0, 1.0], [1.0, 0.0]])
    assert cosine_similarity(*pair) == pytest.approx(5 / np.sqrt(66))
    assert np.isnan(cosine_similarity(np.zeros((2, 2)), np.ones((2, 2))))
    with pytest.raises(ValueError, match="one shape"):
        cosine_similarity(np.ones((2, 2)), np.ones((2, 3)))


def test_adaptive_moments_recover_applied_shear():
    g1, g2 = adaptive_moments_shape(sheared_gaussian(0.2, -0.1), pixel_scale=SCALE)
    assert g1 == pytest.approx(0.2, abs=1e-3)
    assert g2 == pytest.approx(-0.1, abs=1e-3)
    assert np.isnan(adaptive_moments_shape(np.zeros((45, 45)))).all()
    broken = sheared_gaussian(0.2, -0.1)
    broken[0, 0] = np.nan
    assert np.isnan(adaptive_moments_shape(broken)).all()
    with pytest.raises(ValueError, match="2-D"):
        adaptive_moments_shape(np.ones((4, 4, 1)))


def test_guess_centre_is_an_offset_in_columns_then_rows():
    # A small elliptical galaxy 10 px right of the centre (+x, columns) and a round one 10 px above it (+y, rows).
    image = sheared_gaussian(0.2, -0.1, offset=(10, 0), sigma=0.3) + sheared_gaussian(0, 0, offset=(0, 10), sigma=0.3)
    assert adaptive_moments_shape(image, SCALE, guess_centre=(10, 0)) == pytest.approx((0.2, -0.1), abs=1e-3)
    assert adaptive_moments_shape(image, SCALE, guess_centre=(0, 10)) == pytest.approx((0.0, 0.0), abs=1e-3)


def test_shape_errors_per_band():
    round_, elliptical = sheared_gaussian(0.0, 0.0), sheared_gaussian(0.2, -0.1)
    images = np.stack([elliptical, round_], axis=-1)[None].repeat(2, axis=0)
    references = np.stack([round_, round_], axis=-1)[None].repeat(2, axis=0)
    references[1, ..., 0] = 0.0  # a failed measurement: no flux
    errors = shape_errors(images, references, band_index=0, pixel_scale=SCALE)
    assert errors.shape == (2, 2)
    assert errors[0] == pytest.approx([0.2, -0.1], abs=1e-3)
    assert np.isnan(errors[1]).all()
    np.testing.assert_array_equal(shape_errors(images, images, band_index=1), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="band_index"):
        shape_errors(images, references, band_index=2)
    with pytest.raises(ValueError, match=r"\(n, H, W, bands\)"):
        shape_errors(images[0], references[0], band_index=0)


def test_flux_errors_per_band():
    references = np.ones((2, 3, 3, 2))
    images = references.copy()
    images[0, 0, 0, 1] += 0.9  # 9.9 / 9 − 1
    images[1, :, :, 0] *= 0.5
    np.testing.assert_allclose(flux_errors(images, references), [[0.0, 0.1], [-0.5, 0.0]])
    with pytest.raises(ValueError, match="one shape"):
        flux_errors(images, references[..., :1])


def test_robust_sigma():
    assert robust_sigma(np.random.default_rng(0).normal(size=20_000)) == pytest.approx(1.0, rel=0.05)
    # median 3, absolute deviations [2, 1, 0, 1, 97] → MAD 1
    assert robust_sigma([1.0, 2.0, 3.0, 4.0, 100.0, np.nan]) == pytest.approx(MAD_TO_SIGMA)
    assert np.isnan(robust_sigma([np.nan]))


def former_robust_sigma(values):
    """The former hand-written estimate: 1.4826 × median |x − median(x)| over the finite values."""
    finite = np.asarray(values, float).ravel()
    finite = finite[np.isfinite(finite)]
    return 1.4826 * np.median(np.abs(finite - np.median(finite)))


def test_robust_sigma_equals_the_former_formula():
    rng = np.random.default_rng(2)
    samples = [rng.normal(3.0, 0.2, size=1001), rng.standard_cauchy(size=(40, 5)), rng.exponential(size=2),
               np.array([1.0, np.inf, -np.inf, np.nan, 4.0, 2.5]), np.array([7.0])]
    for values in samples:
        result = robust_sigma(values)
        assert isinstance(result, float)
        # Only the constant changed: 1 / Φ⁻¹(3/4) = 1.4826022 instead of 1.4826 (1.5e-6 relative).
        assert result == pytest.approx(former_robust_sigma(values), rel=2e-6, abs=0)
        assert result == pytest.approx(former_robust_sigma(values) * MAD_TO_SIGMA / 1.4826, rel=1e-12, abs=0)
    assert np.isnan(robust_sigma([np.inf, np.nan])) and np.isnan(robust_sigma([]))


def former_ssim_map(image, reference, data_range):
    """The former hand-written SSIM map: Wang et al. (2004), scipy Gaussian window σ = 1.5 px, mode reflect."""
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2

    def blur(a):
        return gaussian_filter(a, 1.5, mode="reflect", truncate=3.5)

    mu_x, mu_y = blur(image), blur(reference)
    var_x = blur(image * image) - mu_x**2
    var_y = blur(reference * reference) - mu_y**2
    cov = blur(image * reference) - mu_x * mu_y
    return ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))


def ssim_pairs():
    """(image, reference) pairs: noise, galaxies against noisy or sheared copies, a non-square stamp."""
    rng = np.random.default_rng(4)
    galaxy = sheared_gaussian(0.2, -0.1)
    yield rng.normal(size=(32, 32)), rng.normal(size=(32, 32))
    yield rng.uniform(size=(11, 17)), rng.uniform(size=(11, 17))
    yield galaxy + rng.normal(scale=0.01, size=galaxy.shape), galaxy
    yield sheared_gaussian(0.0, 0.3, offset=(1.5, -2.0), sigma=0.8, flux=2.0), galaxy
    yield 0.9 * galaxy + rng.normal(scale=0.002, size=galaxy.shape), galaxy + rng.normal(scale=0.002, size=galaxy.shape)


def test_ssim_equals_the_former_implementation_on_the_interior():
    assert SSIM_BORDER == 5  # window 2 × int(3.5 × 1.5 + 0.5) + 1 = 11 px
    inner = (slice(SSIM_BORDER, -SSIM_BORDER),) * 2
    for image, reference in ssim_pairs():
        data_range = reference.max() - reference.min()
        assert ssim(image, reference) == pytest.approx(former_ssim_map(image, reference, data_range)[inner].mean(),
                                                       abs=1e-6)
        assert ssim(image, reference, data_range=3.0) == pytest.approx(
            former_ssim_map(image, reference, 3.0)[inner].mean(), abs=1e-6)
    # Expected difference: the former function averaged the whole map, border included, where the window leaves
    # the image and reflects it. On galaxy stamps that border is mostly sky, e.g. the 4th pair (two different
    # noiseless galaxies, 45 × 45 px) scores 0.760 over the whole map but 0.604 over the interior.


def test_ssim_rejects_bad_shapes():
    with pytest.raises(ValueError, match="2-D images of one shape"):
        ssim(np.ones((16, 16)), np.ones((16, 15)))
    with pytest.raises(ValueError, match="2-D images of one shape"):
        ssim(np.ones((16, 16, 1)), np.ones((16, 16, 1)))
    with pytest.raises(ValueError):  # smaller than the 11-px window
        ssim(np.ones((10, 16)), np.ones((10, 16)))


def test_batch_metrics_are_the_per_image_ones():
    pairs = list(ssim_pairs())[2:]
    images = np.stack([np.stack([image, 2 * image], axis=-1) for image, _ in pairs])
    references = np.stack([np.stack([reference, reference], axis=-1) for _, reference in pairs])
    np.testing.assert_array_equal(ssim_scores(images, references, 1),
                                  [ssim(2 * image, reference) for image, reference in pairs])
    np.testing.assert_array_equal(cosine_similarities(images, references),
                                  [cosine_similarity(i, r) for i, r in zip(images, references)])
    np.testing.assert_array_equal(adaptive_shapes(images, 0, SCALE),
                                  [adaptive_moments_shape(image, SCALE) for image, _ in pairs])
    assert ssim_scores(images[:0], references[:0], 0).shape == cosine_similarities(images[:0], references[:0]).shape
    assert cosine_similarities(images[:0], references[:0]).shape == (0,)
    assert adaptive_shapes(images[:0], 0).shape == (0, 2)
    with pytest.raises(ValueError, match="band_index"):
        ssim_scores(images, references, 2)
    with pytest.raises(ValueError, match=r"\(n, H, W, bands\)"):
        adaptive_shapes(images[0], 0)


def test_binned_statistics_hand_example():
    x = np.array([0.5, 1.5, 1.2, 2.0, 1.8, 5.0, np.nan])
    values = np.array([1.0, 2.0, 4.0, 9.0, np.nan, 7.0, 3.0])
    low, high = binned_statistics(x, values, edges=[0.0, 1.0, 2.0])
    assert (low["low"], low["high"], low["count"], low["n_failed"]) == (0.0, 1.0, 1, 0)
    assert low["median"] == low["mean"] == 1.0
    assert low["robust_sigma"] == 0.0 and np.isnan(low["std"])
    # x = 2.0 falls in the last, closed bin; x = 5 and NaN fall in none.
    assert (high["count"], high["n_failed"]) == (3, 1)
    assert high["median"] == 4.0 and high["mean"] == 5.0
    assert high["robust_sigma"] == pytest.approx(MAD_TO_SIGMA * 2)
    assert high["std"] == pytest.approx(np.std([2.0, 4.0, 9.0], ddof=1))
    with pytest.raises(ValueError, match="edges"):
        binned_statistics(x, values, edges=[1.0, 0.0])
    with pytest.raises(ValueError, match="x and values"):
        binned_statistics(x, values[:-1], edges=[0.0, 1.0])


def synthetic_shear_test(n=2000, m_true=(0.01, -0.02), c_true=(1e-3, -2e-3), shear=(0.02, -0.01)):
    """e = (1 + m)(e_int + g) + c + noise for ±shear, for the galaxies and their 90°-turned copies."""
    rng = np.random.default_rng(3)
    intrinsic = rng.normal(scale=0.25, size=(n, 2))

    def measure(e_int, g):
        return (1 + np.array(m_true)) * (e_int + g) + np.array(c_true) + rng.normal(scale=1e-4, size=(n, 2))

    g = np.array(shear)
    return [measure(intrinsic, g), measure(intrinsic, -g), measure(-intrinsic, g), measure(-intrinsic, -g)]


def test_shear_bias_recovers_m_and_c():
    e_plus, e_minus, e_plus_turned, e_minus_turned = synthetic_shear_test()
    result = shear_bias(e_plus, e_minus, (0.02, -0.01), e_plus_turned, e_minus_turned, n_bootstrap=50)
    assert result["n"] == 2000
    np.testing.assert_allclose(result["m"], [0.01, -0.02], atol=1e-3)
    np.testing.assert_allclose(result["c"], [1e-3, -2e-3], atol=1e-4)
    assert all(0 < err < 1e-3 for err in result["m_err"] + result["c_err"])
    # Without the turned copies c carries the shape noise: (1 + m) mean(e_int) ≈ 0.25 / √2000 ≫ c_true.
    unturned = shear_bias(e_plus, e_minus, (0.02, -0.01), n_bootstrap=50)
    np.testing.assert_allclose(unturned["m"], [0.01, -0.02], atol=1e-3)
    assert all(err > 3e-3 for err in unturned["c_err"])


def test_shear_bias_drops_nan_rows_and_zero_shear_components():
    e_plus, e_minus, e_plus_turned, e_minus_turned = synthetic_shear_test(shear=(0.02, 0.0))
    e_plus[3, 0] = np.nan
    e_minus_turned[7, 1] = np.nan
    result = shear_bias(e_plus, e_minus, (0.02, 0.0), e_plus_turned, e_minus_turned, n_bootstrap=20)
    assert result["n"] == 1998
    assert result["m"][0] == pytest.approx(0.01, abs=1e-3)
    assert np.isnan(result["m"][1]) and np.isnan(result["m_err"][1])
    np.testing.assert_allclose(result["c"], [1e-3, -2e-3], atol=1e-4)


def test_shear_bias_bootstrap_is_seeded():
    e_plus, e_minus, *_ = synthetic_shear_test(n=200)
    first, second = (shear_bias(e_plus, e_minus, (0.02, -0.01), n_bootstrap=20, seed=5) for _ in range(2))
    assert first == second
    assert shear_bias(e_plus, e_minus, (0.02, -0.01), n_bootstrap=20, seed=6)["m_err"] != first["m_err"]


def test_shear_bias_validates_arguments():
    e = np.zeros((5, 2))
    with pytest.raises(ValueError, match="e_minus"):
        shear_bias(e, np.zeros((4, 2)), (0.02, 0.0))
    with pytest.raises(ValueError, match="e_plus"):
        shear_bias(np.zeros((5, 3)), np.zeros((5, 3)), (0.02, 0.0))
    with pytest.raises(ValueError, match="e_minus_turned"):
        shear_bias(e, e, (0.02, 0.0), e, np.zeros((5, 1)))
    with pytest.raises(ValueError, match="together"):
        shear_bias(e, e, (0.02, 0.0), e_plus_turned=e)
    with pytest.raises(ValueError, match="not both zero"):
        shear_bias(e, e, (0.0, 0.0))
