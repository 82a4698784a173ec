"""Our deblender inside a tiny BlendingToolKit pipeline (skipped without the optional blending-toolkit)."""

import numpy as np
import pytest

btk = pytest.importorskip("btk")

from btk.deblend import DeblendGenerator  # noqa: E402
from btk.match import PixelHungarianMatcher  # noqa: E402
from btk.metrics.reconstruction import MSE  # noqa: E402
from btk.sampling_functions import DefaultSampling  # noqa: E402
from btk.survey import get_surveys  # noqa: E402

from lenstronomy_vae.deblending.btk_adapter import (  # noqa: E402
    CatsimGenerator,
    VAEDeblender,
    _IntSeeds,
    channels_last,
)
from lenstronomy_vae.networks import Deblender  # noqa: E402
from lenstronomy_vae.sims.catsim import catsim_catalog  # noqa: E402

BATCH = 3


@pytest.fixture(scope="module")
def catalog():
    return btk.catalog.CatsimCatalog(catsim_catalog(12, seed=3))


def generator(catalog, **kwargs):
    sampling = DefaultSampling(max_number=3, min_number=2, stamp_size=9.0, max_shift=0.9, max_mag=25.3, seed=1)
    return CatsimGenerator(catalog, sampling, get_surveys("LSST"), batch_size=BATCH, seed=2, **kwargs)


@pytest.fixture(scope="module")
def deblender(lsst_vae):
    return Deblender.from_vae(lsst_vae, seed=0)


def test_generator_runs_on_current_numpy_with_one_rotation_per_blend(catalog):
    batch = next(generator(catalog, augment_data=True))
    assert batch.blend_images.shape == (BATCH, 6, 45, 45)
    assert np.all(np.isfinite(batch.blend_images))
    rotations = [tuple(np.round(cat["btk_rotation"][:2], 6)) for cat in batch.catalog_list]
    assert len(set(rotations)) == BATCH  # BTK 1.0.9 alone gives every blend of a batch the same rotations


def test_seeds_are_ints_and_never_repeat():
    seeds = _IntSeeds(np.random.SeedSequence(0))
    first, second = seeds.generate_state(1), seeds.generate_state(1)  # BTK: galaxy noise, then sky noise
    assert isinstance(first, int) and first != second
    children = seeds.spawn(2)
    assert children[0].generate_state(1) != children[1].generate_state(1)
    assert seeds.generate_state(3).shape == (3,)


def test_deblend_generator_with_vae_deblender_and_btk_metrics(catalog, deblender):
    deblenders = [VAEDeblender(deblender, max_n_sources=4), VAEDeblender(deblender, max_n_sources=4, positions="truth")]
    batch, outputs = next(DeblendGenerator(deblenders, generator(catalog)))
    assert set(outputs) == {"VAEDeblender_0", "VAEDeblender_1"}
    for output in outputs.values():
        assert output.deblended_images.shape == (BATCH, 4, 6, 45, 45)
        assert np.all(output.deblended_images >= 0)
    truth_mode = outputs["VAEDeblender_1"]
    for true_cat, found in zip(batch.catalog_list, truth_mode.catalog_list):
        assert len(found) == len(true_cat)
        np.testing.assert_allclose(found["ra"], true_cat["ra"], atol=1e-6)  # arcsec offsets, as BTK's
        np.testing.assert_allclose(found["x_peak"], true_cat["x_peak"])
    matching = PixelHungarianMatcher(pixel_max_sep=5.0)(batch.catalog_list, truth_mode.catalog_list)
    iso = matching.match_true_arrays(batch.isolated_images)
    deblended = matching.match_pred_arrays(truth_mode.deblended_images)
    mse = MSE(BATCH)(iso[:, :, 3], deblended[:, :, 3])
    assert np.isfinite(mse)


def test_channels_first_arrays_are_accepted(catalog, deblender):
    batch = next(generator(catalog))
    adapter = VAEDeblender(deblender, max_n_sources=4)
    first = adapter.deblend_image(batch.blend_images[0])
    last = adapter.deblend_image(np.moveaxis(batch.blend_images[0], 0, -1))
    np.testing.assert_allclose(first.model, last.model)
    stamps = batch.blend_images[:2]
    out = adapter.deblend_stamps(stamps)
    assert out.shape == stamps.shape
    np.testing.assert_allclose(np.moveaxis(out, 1, -1), adapter.deblend_stamps(np.moveaxis(stamps, 1, -1)))
    assert channels_last(stamps, 6).shape == (2, 45, 45, 6)
    with pytest.raises(ValueError, match="bands"):
        channels_last(np.zeros((2, 5, 45, 45)), 6)


def test_wrong_bands_are_refused(catalog, deblender):
    batch = next(generator(catalog))
    batch.survey.available_filters = list("ugrizy")[::-1]
    with pytest.raises(ValueError, match="bands"):
        VAEDeblender(deblender).deblend(0, batch)
