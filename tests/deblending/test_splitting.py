"""Re-encoding with neighbours subtracted, re-centring, and splitting merged detections."""

import dataclasses

import galsim
import numpy as np
import pytest

from lenstronomy_vae.deblending.scene_model import (
    SceneResult,
    model_blendedness,
    reencoded,
    scene_model,
    survey_kernels,
)
from lenstronomy_vae.deblending.splitting import EXCLUSION, centroids, placed, residual_peak, split_merged
from lenstronomy_vae.deblending.stamps import cutout
from lenstronomy_vae.networks.deblender import Deblender
from lenstronomy_vae.sims.surveys import get_survey

SURVEY = get_survey("lsst")
SKY = np.asarray(SURVEY.sky_levels)


def gaussian_scene(centres, fluxes, shape=(60, 60)):
    """Noiseless (H, W, 6) image of round Gaussians (σ 1.5 px) at (x, y) centres with i-band-like fluxes."""
    image = np.zeros(shape + (6,))
    for (x, y), flux in zip(centres, fluxes):
        profile = galsim.Gaussian(sigma=0.3, flux=flux)
        drawn = profile.drawImage(nx=shape[1], ny=shape[0], scale=0.2,
                                  offset=(x - (shape[1] - 1) / 2, y - (shape[0] - 1) / 2)).array
        image += drawn[:, :, None]
    return image


@pytest.fixture(scope="module")
def deblender(lsst_vae):
    return Deblender.from_vae(lsst_vae)


def test_reencoding_reads_each_galaxy_with_its_neighbours_models_subtracted(deblender):
    kernels = survey_kernels(SURVEY, deblender.config.bands)
    image = gaussian_scene([(25.0, 30.0), (33.0, 30.0)], [3e5, 2e5])
    galaxies = placed(deblender, image, [(25.0, 30.0), (33.0, 30.0)], kernels, SKY)
    assert reencoded(deblender, image, galaxies, kernels, SKY, iterations=0) is galaxies
    model_only = scene_model(image.shape, galaxies)  # a scene its model fits exactly
    again = reencoded(deblender, model_only, galaxies, kernels, SKY, iterations=1)
    for old, new in zip(galaxies, again):
        alone = cutout(scene_model(image.shape, [old]), old.x, old.y, deblender.config.image_size)[0]
        np.testing.assert_allclose(new.latent, deblender.encode(alone[None])[0], rtol=1e-5, atol=1e-6)
        assert (new.x, new.y, new.row0, new.col0) == (old.x, old.y, old.row0, old.col0)


def test_centroid_moves_a_merged_detection_onto_the_member_left_to_it(deblender):
    kernels = survey_kernels(SURVEY, deblender.config.bands)
    image = gaussian_scene([(27.0, 30.0), (33.0, 30.0)], [3e5, 3e5])
    merged = placed(deblender, image, [(30.0, 30.0)], kernels, SKY)[0]
    # The right-hand member has its own model, exactly its light: what is left to the merged one is the left member.
    right = merged.__class__(33.0, 30.0, *cutout(image, 33.0, 30.0, 45)[1], merged.latent, merged.intrinsic,
                             cutout(gaussian_scene([(33.0, 30.0)], [3e5]), 33.0, 30.0, 45)[0])
    (x, y), _ = centroids(image, [merged, right], SKY)
    assert x == pytest.approx(27.0, abs=0.3) and y == pytest.approx(30.0, abs=0.3)


def test_residual_peak_is_the_unmodelled_galaxy_away_from_the_others(deblender):
    kernels = survey_kernels(SURVEY, deblender.config.bands)
    image = gaussian_scene([(20.0, 20.0), (40.0, 35.0)], [3e5, 1e5])
    modelled = [g for g in placed(deblender, image, [(20.0, 20.0)], kernels, SKY)]
    x, y, significance = residual_peak(image - 0.0, [modelled[0].__class__(
        20.0, 20.0, *cutout(image, 20.0, 20.0, 45)[1], modelled[0].latent, modelled[0].intrinsic,
        cutout(gaussian_scene([(20.0, 20.0)], [3e5]), 20.0, 20.0, 45)[0])], SKY)
    assert (x, y) == (40.0, 35.0) and significance > 10
    assert residual_peak(np.zeros((30, 30, 6)), [], SKY) is None
    # Nothing is tried within EXCLUSION pixels of a galaxy.
    x, y, _ = residual_peak(image, modelled, SKY)
    assert np.hypot(x - 20.0, y - 20.0) >= EXCLUSION


def test_split_merged_keeps_a_new_galaxy_only_for_a_large_enough_chi2_fall(deblender):
    kernels = survey_kernels(SURVEY, deblender.config.bands)
    image = gaussian_scene([(20.0, 20.0), (40.0, 35.0)], [3e5, 1e5])
    image = np.random.default_rng(3).poisson(image + SKY) - SKY
    start = placed(deblender, image, [(20.0, 20.0)], kernels, SKY)
    assert split_merged(deblender, image, start, kernels, SKY, np.inf, 5, 1) == start
    added = split_merged(deblender, image, start, kernels, SKY, -np.inf, 2, 1)
    assert len(added) == 3
    assert split_merged(deblender, image, start, kernels, SKY, -np.inf, 0, 1) == start


def test_model_blendedness_is_zero_alone_and_grows_under_a_brighter_neighbour(deblender):
    kernels = survey_kernels(SURVEY, deblender.config.bands)
    image = gaussian_scene([(25.0, 30.0)], [1e5])
    (faint,) = placed(deblender, image, [(25.0, 30.0)], kernels, SKY)
    assert faint.model.sum() > 0
    # The same galaxy ten times brighter, 4 px to the right.
    galaxies = [faint, dataclasses.replace(faint, x=29.0, col0=faint.col0 + 4, model=10 * faint.model)]
    alone = scene_model(image.shape, galaxies[:1])
    assert model_blendedness(SceneResult(galaxies[:1], alone, image - alone), galaxies[0], SKY) == pytest.approx(0.0)
    both = scene_model(image.shape, galaxies)
    result = SceneResult(galaxies, both, image - both)
    faint, bright = (model_blendedness(result, galaxy, SKY) for galaxy in galaxies)
    assert 0 < bright < faint < 1
