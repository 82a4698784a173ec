"""Deblending an image of any size in overlapping tiles, each galaxy owned by exactly one tile.

The image is cut into square cores that cover it without overlap; each core is deblended with a
margin of context around it (:func:`~lenstronomy_vae.deblending.scene.deblend_scene` on the core
plus margin), and keeps only the galaxies whose centre pixel lies in its core. A galaxy near a core's
edge is thus modelled with its neighbours on both sides, and claimed by one tile; the rare galaxy
that two tiles place on either side of their common edge (positions differ by re-centring) is kept
once, from the tile where it lies deeper inside the context (:data:`DUPLICATE_DISTANCE`). Memory is
bounded by the tile, not the image: only the field's model and residual are image-sized.
Positions are pixels in ``sep``'s convention (``x`` the column, ``y`` the row, pixel centres at
integers); images are (H, W, bands) in the survey's image units.
"""

import dataclasses
import math
import warnings

import numpy as np
from scipy.spatial import cKDTree
from tqdm import tqdm

from lenstronomy_vae.deblending.scene import MAX_NEW_SOURCES, deblend_scene
from lenstronomy_vae.deblending.scene_model import SceneResult, checked_scene
from lenstronomy_vae.deblending.stamps import paste
from lenstronomy_vae.networks import Deblender, load_network
from lenstronomy_vae.utils.checks import check_count
from lenstronomy_vae.utils.engine import cached_in_worker

# Default side of a tile's core [pixels] and of the context margin around it (≥ half a 45-pixel stamp,
# plus the reach of a neighbour's light). A 256 × 256 tile of an LSST field at 50 galaxies per arcmin²
# holds ~40 galaxies: the joint flux fit's templates take ~120 MB.
TILE_SIZE = 192
MARGIN = 32
# Two galaxies of different tiles closer than this are the same galaxy [pixels].
DUPLICATE_DISTANCE = 1.5


@dataclasses.dataclass(frozen=True)
class Tile:
    """One tile: its core (owned pixels) and the core plus margin that is deblended, as [start, stop) ranges."""

    core_rows: tuple
    core_cols: tuple
    rows: tuple
    cols: tuple

    def owns(self, x, y):
        """Whether the pixel nearest (x, y) (halves up, as stamps are centred) lies in the core."""
        row, col = math.floor(y + 0.5), math.floor(x + 0.5)
        return self.core_rows[0] <= row < self.core_rows[1] and self.core_cols[0] <= col < self.core_cols[1]

    def depth(self, x, y):
        """Distance of (x, y) from the nearest edge of the deblended region (core plus margin) [pixels]."""
        return min(y - self.rows[0], self.rows[1] - 1 - y, x - self.cols[0], self.cols[1] - 1 - x)


def tiles(shape, tile_size=TILE_SIZE, margin=MARGIN):
    """The tiles of an image of ``shape`` (H, W, ...): cores of ``tile_size`` that cover it, row by row."""
    check_count("tile_size", tile_size)
    if isinstance(margin, bool) or not isinstance(margin, (int, np.integer)) or margin < 0:
        raise ValueError(f"margin must be a non-negative integer number of pixels, got {margin!r}")
    height, width = shape[:2]
    out = []
    for row0 in range(0, height, tile_size):
        for col0 in range(0, width, tile_size):
            core_rows, core_cols = (row0, min(row0 + tile_size, height)), (col0, min(col0 + tile_size, width))
            out.append(Tile(core_rows, core_cols, (max(core_rows[0] - margin, 0), min(core_rows[1] + margin, height)),
                            (max(core_cols[0] - margin, 0), min(core_cols[1] + margin, width))))
    return out


def tile_region(image, tile):
    """The part of ``image`` a tile deblends: its core plus margin (a view)."""
    return image[tile.rows[0]:tile.rows[1], tile.cols[0]:tile.cols[1]]


def deblend_tile(deblender, region, tile, survey="lsst", **scene_kwargs):
    """The galaxies a tile owns, placed on the whole image's grid: (list of SceneGalaxy, their depths, warnings).

    ``region`` is the tile's core plus margin (:func:`tile_region`). Warnings raised while deblending
    are returned (not raised), so that a field warns once per kind (:func:`deblend_field`).
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = deblend_scene(deblender, region, survey, **scene_kwargs)
    owned, depths = [], []
    for galaxy in result.galaxies:
        x, y = galaxy.x + tile.cols[0], galaxy.y + tile.rows[0]
        if tile.owns(x, y):
            # float32 stamps: a field's galaxies hold two (S, S, bands) stamps each, 0.1 MB in float32.
            owned.append(dataclasses.replace(galaxy, x=x, y=y, row0=galaxy.row0 + tile.rows[0],
                                             col0=galaxy.col0 + tile.cols[0], model=galaxy.model.astype(np.float32),
                                             intrinsic=galaxy.intrinsic.astype(np.float32)))
            depths.append(tile.depth(x, y))
    return owned, depths, caught


def kept_indices(galaxies, depths, tile_index):
    """Indices of the galaxies to keep: of two that different tiles placed within :data:`DUPLICATE_DISTANCE`,
    the one deeper inside its tile's region (larger ``depth``); a tile's own close pairs are all kept."""
    dropped = set()
    if len(galaxies) > 1:
        points = np.array([[g.x, g.y] for g in galaxies])
        for i, j in sorted(cKDTree(points).query_pairs(DUPLICATE_DISTANCE)):
            if tile_index[i] != tile_index[j] and i not in dropped and j not in dropped:
                dropped.add(j if depths[i] >= depths[j] else i)
    return [k for k in range(len(galaxies)) if k not in dropped]


def deblended_tiles(deblender, image, survey="lsst", tile_size=TILE_SIZE, margin=MARGIN, progress=False,
                    map_function=map, **scene_kwargs):
    """Deblend an image of any size tile by tile (:func:`tiles`, :func:`deblend_tile`), yielding each tile's galaxies.

    Args:
        deblender: a trained :class:`lenstronomy_vae.networks.deblender.Deblender`, or its name or path:
            give a name or path to run on other processes (each loads it once, :func:`cached_in_worker`).
        image: (H, W, bands) sky-subtracted field in image units, bands as the deblender's.
        survey: survey name or :class:`~lenstronomy_vae.sims.surveys.Survey`.
        tile_size: side of each tile's core [pixels].
        margin: context around each core [pixels].
        progress: show a tqdm progress bar over the tiles.
        map_function: ``map``-like callable, ``map_function(function, tiles, regions)``, yielding the
            results in order: the default runs the tiles here, one after the other;
            :func:`lenstronomy_vae.utils.engine.engine` gives one that runs them on Dask workers.
        **scene_kwargs: passed to ``deblend_scene`` (``threshold``, ``refine``, ``reencode``, ...);
            ``max_new_sources`` defaults to :data:`~lenstronomy_vae.deblending.scene.MAX_NEW_SOURCES`
            per 45 × 45-pixel stamp area of the tile.

    Yields:
        (tile index, the galaxies the tile owns on the whole image's grid with float32 stamps, their
        depths): a galaxy near a core's edge may also be claimed by the next tile, see :func:`kept_indices`.

    Warns:
        After the last tile, each kind of warning of the tiles (sky background, out of training range,
        no training range) once, with the number of tiles that raised it.
    """
    network = cached_in_worker(load_network, deblender, Deblender) if isinstance(deblender, str) else deblender
    image = checked_scene(image, network, dtype=np.float32)
    grid = tiles(image.shape, tile_size, margin)
    stamp_area = network.config.image_size**2
    scene_kwargs.setdefault("max_new_sources",
                            MAX_NEW_SOURCES * max(1, round((tile_size + 2 * margin) ** 2 / stamp_area)))

    def run(tile, region):
        here = cached_in_worker(load_network, deblender, Deblender) if isinstance(deblender, str) else deblender
        return deblend_tile(here, region, tile, survey, **scene_kwargs)

    caught = {}
    with tqdm(total=len(grid), disable=not progress, unit="tile", desc="deblending") as bar:
        results = map_function(run, grid, [tile_region(image, tile) for tile in grid])
        for k, (owned, owned_depths, tile_warnings) in enumerate(results):
            for warning in tile_warnings:
                caught.setdefault(warning.category, []).append((grid[k], warning))
            yield k, owned, owned_depths
            bar.update()
    for category, raised in caught.items():
        tile, first = raised[0]
        where = (f"{len(raised)} of {len(grid)} tiles warned; the first, whose pixel (0, 0) is the image's "
                 f"(row, column) ({tile.rows[0]}, {tile.cols[0]}): ") if len(grid) > 1 else ""
        warnings.warn(f"{where}{first.message}", category, stacklevel=3)


def deblend_field(deblender, image, survey="lsst", tile_size=TILE_SIZE, margin=MARGIN, progress=False,
                  map_function=map, **scene_kwargs):
    """Deblend an image of any size tile by tile, in memory (:func:`deblended_tiles`, arguments as there).

    Every galaxy's stamps stay in memory (~0.1 MB each for LSST's 45 × 45 × 6): for fields of 10⁴
    galaxies and more, :func:`lenstronomy_vae.deblending.fits_pipeline.deblend_fits` keeps them on disk.

    Returns:
        :class:`~lenstronomy_vae.deblending.scene_model.SceneResult` of the whole field, its ``model``
        and ``residual`` float32; galaxies in tile order, each once (:func:`kept_indices`).

    Warns:
        Each kind of warning of the tiles once (see :func:`deblended_tiles`).
    """
    image = np.asarray(image)
    galaxies, depths, tile_index = [], [], []
    for k, owned, owned_depths in deblended_tiles(deblender, image, survey, tile_size, margin, progress,
                                                  map_function, **scene_kwargs):
        galaxies += owned
        depths += owned_depths
        tile_index += [k] * len(owned)
    galaxies = [galaxies[k] for k in kept_indices(galaxies, depths, tile_index)]
    model = np.zeros(image.shape, dtype=np.float32)
    for galaxy in galaxies:
        paste(model, galaxy.model, galaxy.row0, galaxy.col0)
    return SceneResult(galaxies, model, image.astype(np.float32, copy=False) - model)
