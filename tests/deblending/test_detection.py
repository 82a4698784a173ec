"""Detection on multi-band scenes, the segmentation deblender baseline, and stamp cut-and-paste."""

import galsim
import numpy as np
import pytest

from lenstronomy_vae.deblending.detection import detect, detection_image, nearest_detection, segmentation_deblend
from lenstronomy_vae.deblending.stamps import cutout, paste
from lenstronomy_vae.sims.surveys import get_survey

LSST = get_survey("lsst")
BANDS = ("g", "r", "i")
SIGMA = np.array([LSST.noise_sigma[LSST.band_index(band)] for band in BANDS])  # electrons
SIZE = 80  # scene side [pixels]


def render(flux, x, y, hlr=0.4):
    """Noiseless (SIZE, SIZE, 3) image [electrons] of a PSF-convolved exponential galaxy at column x, row y.

    ``flux`` electrons in every band; (x, y) in sep's convention (pixel centres at integers).
    """
    image = np.empty((SIZE, SIZE, len(BANDS)))
    offset = (x - (SIZE - 1) / 2, y - (SIZE - 1) / 2)
    for k, band in enumerate(BANDS):
        galaxy = galsim.Convolve(galsim.Exponential(half_light_radius=hlr, flux=flux), LSST.psf(band))
        image[:, :, k] = galaxy.drawImage(nx=SIZE, ny=SIZE, scale=LSST.pixel_scale, offset=offset).array
    return image


def noise(seed):
    """Gaussian background noise of the three bands [electrons]."""
    return np.random.default_rng(seed).normal(0.0, SIGMA, (SIZE, SIZE, len(BANDS)))


@pytest.fixture(scope="module")
def pair():
    """A faint galaxy at the top left and a brighter one 12 px away: (scene, truth positions)."""
    faint, bright = (30.3, 35.6), (39.8, 42.95)  # (x, y) [pixels], 12.1 px apart
    scene = render(4e5, *faint) + render(1e6, *bright) + noise(1)
    return scene, np.array([bright, faint])  # truth, brightest first


def test_detection_image_weights_bands_by_inverse_variance():
    image = np.broadcast_to([1.0, 2.0, 3.0], (4, 5, 3))
    detection, sigma = detection_image(image, SIGMA)
    weights = SIGMA**-2 / np.sum(SIGMA**-2)
    assert detection.shape == (4, 5) and detection.flags.c_contiguous
    np.testing.assert_allclose(detection, weights @ [1.0, 2.0, 3.0])
    assert sigma == pytest.approx(np.sum(SIGMA**-2) ** -0.5)
    # The stated sigma is the background noise of the detection image of a noise-only scene.
    assert np.std(detection_image(noise(0), SIGMA)[0]) == pytest.approx(sigma, rel=0.03)


def test_two_separated_galaxies_are_found_in_flux_order(pair):
    scene, truth = pair
    detections = detect(scene.astype(">f8"), SIGMA)  # big-endian input: sep needs native byte order
    assert len(detections) == 2
    np.testing.assert_allclose(np.column_stack([detections.x, detections.y]), truth, atol=0.5)
    assert detections.flux[0] > detections.flux[1] > 0
    assert set(np.unique(detections.segmentation)) == {0, 1, 2}
    for k, (x, y) in enumerate(truth):
        assert detections.segmentation[round(y), round(x)] == k + 1
        assert nearest_detection(detections, x + 2.0, y - 1.0) == k


def test_noise_only_scene_has_no_detections():
    detections = detect(noise(3), SIGMA)
    assert len(detections) == 0
    assert detections.x.shape == detections.y.shape == detections.flux.shape == (0,)
    assert detections.segmentation.shape == (SIZE, SIZE) and not detections.segmentation.any()
    assert nearest_detection(detections, 10.0, 10.0) is None
    result = segmentation_deblend(noise(3), SIGMA)
    assert result.index is None and result.image.shape == (SIZE, SIZE, 3) and not result.image.any()


def test_segmentation_deblend_keeps_target_and_drops_neighbour():
    target, neighbour = render(2e6, 39.5, 39.5), render(1e6, 55.5, 39.5)  # target at the centre, 16 px apart
    scene = target + neighbour + noise(2)
    result = segmentation_deblend(scene, SIGMA)
    kept = result.image != 0
    assert result.detections.segmentation[39, 39] == result.index + 1
    assert np.array_equal(result.image[kept], scene[kept])
    assert np.sum(target * kept) / np.sum(target) >= 0.9
    assert np.sum(neighbour * kept) / np.sum(neighbour) < 0.05
    # Asking for the neighbour's position picks the other segment.
    other = segmentation_deblend(scene, SIGMA, position=(55.0, 40.0))
    assert other.index != result.index and np.sum(target * (other.image != 0)) / np.sum(target) < 0.05


@pytest.mark.parametrize("x, y", [(40.2, 39.7), (1.0, 2.4), (78.6, 0.0), (-3.0, 85.0), (70.4, 77.4), (-20.0, 40.0)])
def test_paste_of_cutout_reproduces_the_image_inside_the_window(x, y):
    image = np.random.default_rng(4).normal(size=(SIZE, SIZE - 5, 3))
    stamp, (row0, col0) = cutout(image, x, y, 15)
    assert stamp.shape == (15, 15, 3) and (row0, col0) == (round(y) - 7, round(x) - 7)
    canvas = np.zeros_like(image)
    paste(canvas, stamp, row0, col0)
    inside = np.zeros(image.shape[:2], dtype=bool)
    inside[max(row0, 0): max(row0 + 15, 0), max(col0, 0): max(col0 + 15, 0)] = True
    np.testing.assert_array_equal(canvas[inside], image[inside])
    assert not canvas[~inside].any()
    # Padding: the stamp pixels that fall outside the image are zero.
    rows, cols = np.arange(row0, row0 + 15), np.arange(col0, col0 + 15)
    outside = ~((rows[:, None] >= 0) & (rows[:, None] < image.shape[0]) & (cols >= 0) & (cols < image.shape[1]))
    assert not stamp[outside].any() and np.all(stamp[~outside] != 0)
    # paste adds rather than overwrites.
    paste(canvas, stamp, row0, col0)
    np.testing.assert_array_equal(canvas[inside], 2 * image[inside])


def test_cutout_centres_on_the_nearest_pixel():
    image = np.arange(20 * 30, dtype=float).reshape(20, 30, 1)
    stamp, (row0, col0) = cutout(image, 12.6, 7.4, 5)
    assert (row0, col0) == (5, 11) and stamp[2, 2, 0] == image[7, 13, 0]


def test_bad_arguments_are_reported():
    image = noise(0)
    image[3, 4, 1] = np.nan
    image[5, 6, 0] = np.nan
    with pytest.raises(ValueError, match="2 NaN"):
        detect(image, SIGMA)
    with pytest.raises(ValueError, match=r"noise_sigma must hold one value per band \(3"):
        detection_image(noise(0), SIGMA[:2])
    with pytest.raises(ValueError, match="noise_sigma must be positive"):
        detection_image(noise(0), [1.0, 0.0, 1.0])
    with pytest.raises(ValueError, match=r"image must be a non-empty 3-D array.*\(80, 80\)"):
        detection_image(noise(0)[:, :, 0], SIGMA[:1])
    with pytest.raises(ValueError, match="size must be odd.*got 14"):
        cutout(noise(0), 10.0, 10.0, 14)
    with pytest.raises(ValueError, match="stamp shape"):
        paste(np.zeros((10, 10, 3)), np.zeros((5, 5, 2)), 0, 0)
