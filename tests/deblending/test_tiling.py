"""Large images in tiles: cores that cover the image once, ownership at edges, no duplicates, same as serial."""

import warnings

import numpy as np
import pytest
from astropy.io import fits

from lenstronomy_vae.deblending.scene_model import SceneGalaxy
from lenstronomy_vae.deblending.tiling import Tile, deblend_field, kept_indices, tiles
from lenstronomy_vae.networks.deblender import Deblender
from lenstronomy_vae.sims.field import simulate_field
from lenstronomy_vae.utils.engine import engine


def test_tile_cores_cover_the_image_once_and_margins_stay_on_it():
    grid = tiles((100, 70, 6), tile_size=32, margin=10)
    assert len(grid) == 4 * 3
    count = np.zeros((100, 70), dtype=int)
    for tile in grid:
        count[tile.core_rows[0]:tile.core_rows[1], tile.core_cols[0]:tile.core_cols[1]] += 1
        assert 0 <= tile.rows[0] <= tile.core_rows[0] and tile.core_rows[1] <= tile.rows[1] <= 100
        assert tile.rows[0] == max(tile.core_rows[0] - 10, 0) and tile.cols[1] == min(tile.core_cols[1] + 10, 70)
    assert np.all(count == 1)
    with pytest.raises(ValueError, match="tile_size"):
        tiles((10, 10), tile_size=0)
    with pytest.raises(ValueError, match="margin"):
        tiles((10, 10), margin=-1)


def test_a_galaxy_on_a_core_edge_belongs_to_one_tile():
    left, right = Tile((0, 32), (0, 32), (0, 42), (0, 42)), Tile((0, 32), (32, 64), (0, 42), (22, 64))
    for x in (31.49, 31.5, 31.51, 32.0):  # the nearest pixel, halves up, as stamps are centred
        assert left.owns(x, 5.0) != right.owns(x, 5.0)
    assert left.owns(31.49, 5.0) and right.owns(31.5, 5.0)
    assert left.depth(31.0, 5.0) == pytest.approx(5.0)  # from the lower edge: row 5 - 0


def point(x, y):
    stamp = np.zeros((1, 1, 1))
    return SceneGalaxy(x, y, 0, 0, np.zeros(2), stamp, stamp)


def test_duplicates_across_tiles_keep_the_deeper_one_and_a_tile_keeps_its_close_pairs():
    galaxies = [point(10.0, 10.0), point(10.8, 10.3), point(30.0, 30.0), point(30.9, 30.0)]
    assert kept_indices(galaxies, depths=[3.0, 9.0, 5.0, 5.0], tile_index=[0, 1, 2, 2]) == [1, 2, 3]
    assert kept_indices(galaxies[:1], depths=[3.0], tile_index=[0]) == [0] and kept_indices([], [], []) == []


@pytest.fixture(scope="module")
def field():
    return simulate_field((150, 150), density=80, seed=7)


def deblend_quietly(deblender, image, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return deblend_field(deblender, image, max_new_sources=0, **kwargs)


def test_tiles_find_the_galaxies_of_one_large_tile_with_none_twice(lsst_vae, field):
    deblender = Deblender.from_vae(lsst_vae)
    whole = deblend_quietly(deblender, field.image, tile_size=150)
    tiled = deblend_quietly(deblender, field.image, tile_size=50, margin=32)
    assert len(tiled.galaxies) == pytest.approx(len(whole.galaxies), abs=2)
    positions = np.array([[g.x, g.y] for g in tiled.galaxies])
    distances = np.hypot(*(positions[:, None] - positions[None]).transpose(2, 0, 1))
    assert np.sort(distances, axis=1)[:, 1].min() > 1.5  # no galaxy twice
    for galaxy in whole.galaxies:  # each galaxy of the whole image is in the tiled result
        assert np.min(np.hypot(positions[:, 0] - galaxy.x, positions[:, 1] - galaxy.y)) < 2.0
    np.testing.assert_allclose(tiled.model + tiled.residual, field.image, atol=1e-2)


@pytest.mark.slow
def test_two_dask_workers_give_the_serial_result(tmp_path, field, lsst_vae):
    path = tmp_path / "deblender.keras"
    Deblender.from_vae(lsst_vae).save(path)
    serial = deblend_quietly(str(path), field.image, tile_size=75)
    with engine(workers=2) as map_function:
        parallel = deblend_quietly(str(path), field.image, tile_size=75, map_function=map_function)
    assert [(g.x, g.y) for g in parallel.galaxies] == [(g.x, g.y) for g in serial.galaxies]
    np.testing.assert_allclose(parallel.model, serial.model, rtol=1e-5, atol=1e-3)


def test_the_fits_pipeline_keeps_stamps_on_disk_and_writes_the_in_memory_result(tmp_path, lsst_vae, field,
                                                                                  monkeypatch):
    import lenstronomy_vae.deblending.fits_pipeline as fits_pipeline

    deblender = Deblender.from_vae(lsst_vae)
    field.save_fits(tmp_path / "field.fits")
    monkeypatch.setattr(fits_pipeline, "CHUNK", 3)  # the galaxy table is filled 3 galaxies at a time
    chunks = []
    galaxy_table = fits_pipeline.galaxy_table
    monkeypatch.setattr(fits_pipeline, "galaxy_table",
                        lambda result, *args: chunks.append(len(result.galaxies)) or galaxy_table(result, *args))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = fits_pipeline.deblend_fits(tmp_path / "field.fits", tmp_path / "out", deblender, tile_size=50,
                                           max_new_sources=0)
    memory = deblend_quietly(deblender, field.image, tile_size=50)
    assert len(table) == len(memory.galaxies) > 3 and list(table["id"]) == list(range(len(table)))
    assert max(chunks) == 3 and sum(chunks) == len(table)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["deblended.fits", "galaxies.ecsv"]  # spool gone
    np.testing.assert_allclose(table["x"], [g.x for g in memory.galaxies])
    np.testing.assert_allclose(table["flux_i"], [g.model[..., 3].sum() for g in memory.galaxies], rtol=1e-5)
    with fits.open(tmp_path / "out" / "deblended.fits") as hdus:
        np.testing.assert_allclose(hdus["MODEL"].data, np.moveaxis(memory.model, -1, 0), atol=1e-3)
        np.testing.assert_allclose(hdus["RESIDUAL"].data, np.moveaxis(memory.residual, -1, 0), atol=1e-3)
        for k, galaxy in enumerate(memory.galaxies):
            np.testing.assert_array_equal(hdus["STAMPS"].data[k], np.moveaxis(galaxy.model, -1, 0))
            np.testing.assert_array_equal(hdus["INTRINSIC"].data[k], np.moveaxis(galaxy.intrinsic, -1, 0))
        assert list(hdus["GALAXIES"].data["row0"]) == [g.row0 for g in memory.galaxies]
