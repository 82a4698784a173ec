"""Deblend a multi-band FITS image and write the deblended stamps (FITS) and a galaxy table (ECSV)."""

import dataclasses
import pathlib
import tempfile

import numpy as np
from astropy.io import fits
from astropy.table import Table, vstack

from lenstronomy_vae.deblending.scene_model import MERGED_CHI2, SceneResult
from lenstronomy_vae.deblending.stamps import paste
from lenstronomy_vae.deblending.tiling import TILE_SIZE, deblended_tiles, kept_indices
from lenstronomy_vae.networks.deblender import Deblender
from lenstronomy_vae.networks.model_files import load_network
from lenstronomy_vae.networks.regressor import LatentRegressor
from lenstronomy_vae.sims.shapes import adaptive_moments_shape
from lenstronomy_vae.sims.surveys import get_survey
from lenstronomy_vae.utils.engine import cached_in_worker
from lenstronomy_vae.utils.files import atomic_path
from lenstronomy_vae.utils.fits_io import append_stamp_cube, read_image

# Galaxies whose stamps are read back at a time to fill the galaxy table (~100 MB for LSST stamps).
CHUNK = 1024


def galaxy_table(result, deblender, survey, regressor=None):
    """One row per deblended galaxy; a scene without galaxies gives an empty table with the same columns.

    Columns: ``id``; ``x``, ``y`` detection centre (column, row; pixels, 0-indexed);
    ``flux_<band>`` total PSF-convolved model flux [image units]; ``e1``, ``e2`` adaptive-moment
    shape of the model in the survey's reference measure band ``i`` (reduced shear, NaN if HSM
    fails); ``z_0`` … ``z_{d-1}`` the latent vector (named as the VAE profile's parameters); with
    a regressor, its ``g1``, ``g2`` (intrinsic reduced shear) and ``redshift`` read from the galaxy's
    stamp of the scene with the other galaxies subtracted; ``out_of_range`` (bool) whether the galaxy
    is outside the deblender's training range and ``out_of_range_reasons`` why ("; "-separated; empty
    when inside, which astropy reads back as masked; see
    :func:`lenstronomy_vae.deblending.scene.flag_out_of_range`); ``footprint_chi2``, ``blendedness`` and
    ``likely_merged``
    (see :attr:`lenstronomy_vae.deblending.scene_model.SceneGalaxy.likely_merged`).
    """
    bands = deblender.config.bands
    measure = bands.index("i") if "i" in bands else 0
    galaxies = result.galaxies
    table = Table()
    table["id"] = np.arange(len(galaxies))
    table["x"] = np.array([g.x for g in galaxies], dtype=np.float64)
    table["y"] = np.array([g.y for g in galaxies], dtype=np.float64)
    for b, band in enumerate(bands):
        table[f"flux_{band}"] = np.array([g.model[..., b].sum() for g in galaxies], dtype=np.float64)
        table[f"flux_{band}"].description = f"PSF-convolved model flux [{survey.flux_unit}]"
    shapes = np.array([adaptive_moments_shape(g.model[..., measure], survey.pixel_scale) for g in galaxies])
    shapes = shapes.reshape(len(galaxies), 2)
    table["e1"], table["e2"] = shapes[:, 0], shapes[:, 1]
    latents = np.array([g.latent for g in galaxies]).reshape(len(galaxies), deblender.config.latent_dim)
    for k, values in enumerate(latents.T):  # one column each: an empty (0, d) column does not read back from ECSV
        table[f"z_{k}"] = values
    if regressor is not None:
        stamps = [result.cleaned_stamp(galaxy) for galaxy in galaxies]  # the other galaxies subtracted
        predicted = (regressor.predict_quantities(np.stack(stamps)) if stamps
                     else {name: np.zeros(0) for name in regressor.outputs_names})
        for name, values in predicted.items():
            table[name] = values
    table["out_of_range"] = np.array([bool(g.out_of_range) for g in galaxies], dtype=bool)
    table["out_of_range"].description = "outside the deblender's training range: flux and shape not to be trusted"
    table["out_of_range_reasons"] = np.array(["; ".join(g.out_of_range) for g in galaxies], dtype=str)
    table["out_of_range_reasons"].description = "why, e.g. 'stamp_flux_i 8.1e+06 > 2.4e+06 (3.4x; also g, r)'"
    table["footprint_chi2"] = np.array([g.footprint_chi2 for g in galaxies], dtype=float)
    table["footprint_chi2"].description = "residual chi2 per pixel and band in the galaxy's footprint"
    table["blendedness"] = np.array([g.blendedness for g in galaxies], dtype=float)
    table["blendedness"].description = "1 - sum(m^2) / sum(m M) of the galaxy's model m in the scene's model M"
    table["likely_merged"] = np.array([g.likely_merged for g in galaxies], dtype=bool)
    table["likely_merged"].description = f"footprint_chi2 > {MERGED_CHI2}: likely two galaxies in one detection"
    for column in ("x", "y"):
        table[column].unit = "pix"
    return table


class StampSpool:
    """The galaxies' stamps (PSF-convolved model and intrinsic) in a temporary file, read back one galaxy at a time.

    A field's galaxies hold ~0.1 MB of stamps each (45 × 45 × 6 × 2 float32): 1 GB for 10⁴ galaxies
    in memory, a few kB here. The file lives in ``directory`` and is deleted when the spool is closed.
    """

    def __init__(self, directory):
        self._file = tempfile.TemporaryFile(dir=directory, prefix=".stamps.")
        self._shape = None
        self.count = 0

    def add(self, galaxy):
        """Store the galaxy's ``model`` and ``intrinsic`` (S, S, bands); returns its index in the spool."""
        pair = np.stack([galaxy.model, galaxy.intrinsic]).astype(np.float32)
        if self._shape is None:
            self._shape = pair.shape
        self._file.seek(self.count * pair.nbytes)
        self._file.write(pair.tobytes())
        self.count += 1
        return self.count - 1

    def read(self, index):
        """(model, intrinsic) of galaxy ``index``, float32 (S, S, bands) each."""
        size = 4 * int(np.prod(self._shape))
        self._file.seek(index * size)
        pair = np.frombuffer(self._file.read(size), dtype=np.float32).reshape(self._shape)
        return pair[0], pair[1]

    def restored(self, galaxy, index):
        """``galaxy`` with its stamps read back from the spool."""
        model, intrinsic = self.read(index)
        return dataclasses.replace(galaxy, model=model, intrinsic=intrinsic)

    def close(self):
        self._file.close()


def deblend_fits(image_path, out, deblender="lsst45_deblender", regressor=None, survey="lsst", hdu=None,
                 refine=False, map_steps=100, threshold=1.5, max_new_sources=None, tile_size=TILE_SIZE,
                 map_function=map, progress=False):
    """Deblend a FITS cube (bands, H, W) and write ``out/deblended.fits`` and ``out/galaxies.ecsv``.

    ``deblended.fits`` holds HDUs ``MODEL`` and ``RESIDUAL`` (bands, H, W), ``STAMPS`` (galaxies,
    bands, S, S) PSF-convolved models, ``INTRINSIC`` (galaxies, bands, S, S) without PSF, and
    ``GALAXIES`` (the table, whose ``row0``/``col0`` place each stamp in the image). Files are
    written atomically.

    The image is deblended in tiles of ``tile_size`` pixels (:func:`lenstronomy_vae.deblending.tiling.deblended_tiles`),
    run by ``map_function`` (e.g. :func:`lenstronomy_vae.utils.engine.engine`'s, on Dask workers), with a
    progress bar over the tiles when ``progress``. ``refine``, ``map_steps``, ``threshold`` and
    ``max_new_sources`` (None: the tiled default) are those of :func:`lenstronomy_vae.deblending.scene.deblend_scene`.
    Memory: the field, its model (float32, the residual takes the field's place) and a few kB per
    galaxy; the galaxies' stamps wait on disk (:class:`StampSpool`, in ``out``) until they are written.

    Returns:
        the galaxy table (:func:`galaxy_table`); empty, and the files written, when nothing is detected.

    Warns:
        SkyBackgroundWarning: when the image's background is not consistent with a sky-subtracted
            one (:func:`lenstronomy_vae.deblending.scene.check_sky_subtracted`).
        OutOfTrainingRangeWarning, NoTrainingRangeWarning: see
            :func:`lenstronomy_vae.deblending.scene.deblend_scene`.
    """
    survey = get_survey(survey)
    model = cached_in_worker(load_network, deblender, Deblender) if isinstance(deblender, str) else deblender
    cube, _ = read_image(image_path, hdu=hdu, ndim=3, dtype=np.float32)  # float32: memory of large fields
    if cube.shape[0] != model.config.num_bands:
        raise ValueError(f"{image_path} has {cube.shape[0]} bands but the deblender was trained on "
                         f"{model.config.num_bands} {model.config.bands}; give a cube (bands, H, W) in that order")
    image = np.ascontiguousarray(np.moveaxis(cube, 0, -1))
    del cube
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    options = {} if max_new_sources is None else {"max_new_sources": max_new_sources}
    spool = StampSpool(out)
    try:
        galaxies, depths, tile_index = [], [], []
        model_image = np.zeros(image.shape, dtype=np.float32)
        for k, owned, owned_depths in deblended_tiles(deblender, image, survey, tile_size=tile_size,
                                                      map_function=map_function, progress=progress, refine=refine,
                                                      map_steps=map_steps, threshold=threshold, **options):
            for galaxy in owned:  # its model goes into the field's, its stamps to the spool
                paste(model_image, galaxy.model, galaxy.row0, galaxy.col0)
                spool.add(galaxy)
                galaxies.append(dataclasses.replace(galaxy, model=None, intrinsic=None))
            depths += owned_depths
            tile_index += [k] * len(owned)
        kept = kept_indices(galaxies, depths, tile_index)
        for index in sorted(set(range(len(galaxies))) - set(kept)):  # found by two tiles: one model taken out
            paste(model_image, -spool.read(index)[0], galaxies[index].row0, galaxies[index].col0)
        residual = image
        residual -= model_image  # in place: the field is not needed any more
        del image
        table = _galaxy_table_in_chunks(galaxies, kept, spool, model_image, residual, model, survey, regressor)
        _write_deblended_fits(out / "deblended.fits", model_image, residual, spool, kept, table, model, survey)
    finally:
        spool.close()
    with atomic_path(out / "galaxies.ecsv") as temporary:
        table.write(temporary, format="ascii.ecsv", overwrite=True)
    return table


def _galaxy_table_in_chunks(galaxies, kept, spool, model_image, residual, deblender, survey, regressor):
    """:func:`galaxy_table` of the kept galaxies, :data:`CHUNK` of them at a time with their stamps read back."""
    regressor_model = load_network(regressor, LatentRegressor) if regressor else None
    parts = []
    for start in range(0, max(len(kept), 1), CHUNK):
        restored = [spool.restored(galaxies[index], index) for index in kept[start:start + CHUNK]]
        parts.append(galaxy_table(SceneResult(restored, model_image, residual), deblender, survey, regressor_model))
    table = vstack(parts, metadata_conflicts="silent") if len(parts) > 1 else parts[0]
    table["id"] = np.arange(len(table))
    table["row0"] = np.array([galaxies[index].row0 for index in kept], dtype=np.int64)
    table["col0"] = np.array([galaxies[index].col0 for index in kept], dtype=np.int64)
    return table


def _write_deblended_fits(path, model_image, residual, spool, kept, table, deblender, survey):
    """Write ``deblended.fits`` atomically, the stamps streamed from the spool (see :func:`deblend_fits`)."""
    header = fits.Header()
    header["BANDS"] = (" ".join(deblender.config.bands), "bands of the cube axis")
    header["BUNIT"] = survey.flux_unit
    header["PIXSCALE"] = (survey.pixel_scale, "arcsec per pixel")
    stamp_shape = (deblender.config.num_bands, deblender.config.image_size, deblender.config.image_size)
    with atomic_path(path) as temporary:
        fits.HDUList([
            fits.PrimaryHDU(header=header),
            fits.ImageHDU(np.moveaxis(model_image, -1, 0), header, name="MODEL"),
            fits.ImageHDU(np.moveaxis(residual, -1, 0), header, name="RESIDUAL"),
        ]).writeto(temporary, overwrite=True)
        for name, which in (("STAMPS", 0), ("INTRINSIC", 1)):
            append_stamp_cube(temporary, (np.moveaxis(spool.read(index)[which], -1, 0) for index in kept), len(kept),
                              stamp_shape, header, name)
        table_hdu = fits.table_to_hdu(table)
        table_hdu.name = "GALAXIES"
        with fits.open(temporary, mode="append") as hdus:
            hdus.append(table_hdu)
