"""Tables of lens cut-outs: what ``fit-many`` reads, and the simulated lenses that test and benchmark it.

A lens table (ECSV or CSV, one row per lens) has the columns

``name``
    unique; names the per-lens outputs.
``image``
    FITS file of the cut-out (a square 2-D image in counts/s), relative to the table's directory.
``pixel_scale``
    arcsec per pixel.
``background_rms``
    background noise per pixel [counts/s].
``exposure_time``
    seconds (the Poisson noise of the sources).
``psf`` or ``psf_fwhm``
    a FITS file of the PSF kernel (odd size, any normalisation) or a Gaussian FWHM [arcsec].
``theta_E``, ``center_x``, ``center_y`` (optional)
    initial guesses of the SIE's Einstein radius and centre [arcsec]; default 1.0″ at the centre.

Other columns (e.g. the truth of simulated lenses, ``true_theta_E``) are carried to the results.
"""

import dataclasses
import pathlib

import numpy as np
from astropy.io import fits
from astropy.table import Table
from lenstronomy.Util import simulation_util

from lenstronomy_vae.lensing.lens_simulation import LensSettings, simulate_lens
from lenstronomy_vae.utils.checks import check_count, check_finite
from lenstronomy_vae.utils.files import atomic_path
from lenstronomy_vae.utils.fits_io import read_image

REQUIRED = ("name", "image", "pixel_scale", "background_rms", "exposure_time")
START = ("theta_E", "center_x", "center_y")


@dataclasses.dataclass
class LensCutout:
    """One lens to fit: lenstronomy's data, PSF and numerics keyword arguments, a start, and the table row.

    Attributes:
        name: the lens's name.
        kwargs_data: lenstronomy ``ImageData`` kwargs with ``image_data``.
        kwargs_psf: lenstronomy ``PSF`` kwargs.
        kwargs_numerics: lenstronomy numerics kwargs.
        start: initial ``theta_E``, ``center_x``, ``center_y`` of the SIE [arcsec].
        row: the table row's other columns (JSON types).
    """

    name: str
    kwargs_data: dict
    kwargs_psf: dict
    kwargs_numerics: dict
    start: dict
    row: dict


def _value(row, column, table_path):
    value = row[column]
    if np.ma.is_masked(value):
        raise ValueError(f"{table_path}: lens {row['name']!r} has no {column}")
    return value


def read_lens_table(path):
    """The :class:`LensCutout` of every row of a lens table (see the module's docstring).

    Raises:
        ValueError: on a missing column, a duplicate name, a non-square or non-finite image, or a
            missing value, naming the lens and the problem.
    """
    path = pathlib.Path(path)
    table = Table.read(path, format="ascii.ecsv" if path.suffix == ".ecsv" else "ascii.csv")
    missing = [column for column in REQUIRED if column not in table.colnames]
    if "psf" not in table.colnames and "psf_fwhm" not in table.colnames:
        missing.append("psf or psf_fwhm")
    if missing:
        raise ValueError(f"{path} lacks the column(s) {missing}; a lens table needs {list(REQUIRED)} and psf or "
                         "psf_fwhm")
    names = [str(name) for name in table["name"]]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"{path}: lens names must be unique; repeated: {duplicates}")
    cutouts = []
    for row in table:
        name = str(row["name"])
        image, _ = read_image(path.parent / str(_value(row, "image", path)), ndim=2)
        if image.shape[0] != image.shape[1]:
            raise ValueError(f"{path}: lens {name!r} has a {image.shape} image; cut-outs must be square")
        pixel_scale = float(_value(row, "pixel_scale", path))
        kwargs_data = simulation_util.data_configure_simple(image.shape[0], pixel_scale,
                                                            float(_value(row, "exposure_time", path)),
                                                            float(_value(row, "background_rms", path)))
        kwargs_data["image_data"] = image
        if "psf" in table.colnames and not np.ma.is_masked(row["psf"]) and str(row["psf"]):
            kernel, _ = read_image(path.parent / str(row["psf"]), ndim=2)
            check_finite(f"lens {name!r} PSF", kernel, "row, column")
            kwargs_psf = {"psf_type": "PIXEL", "kernel_point_source": kernel / kernel.sum()}
        else:
            kwargs_psf = {"psf_type": "GAUSSIAN", "fwhm": float(_value(row, "psf_fwhm", path)), "truncation": 5}
        start = {"theta_E": 1.0, "center_x": 0.0, "center_y": 0.0}
        for column in START:
            if column in table.colnames and not np.ma.is_masked(row[column]):
                start[column] = float(row[column])
        extra = {column: _jsonable(row[column]) for column in table.colnames
                 if column not in (*REQUIRED, "psf", "psf_fwhm", *START) and not np.ma.is_masked(row[column])}
        cutouts.append(LensCutout(name, kwargs_data, kwargs_psf, {"supersampling_factor": 3}, start, extra))
    return cutouts


def _jsonable(value):
    return value.item() if isinstance(value, np.generic) else value


def random_lens_settings(seed):
    """:class:`LensSettings` with an SIE + shear drawn from ``seed``: θ_E 0.7–1.2″, |e| < 0.2, |γ| < 0.05."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(7,)))
    lens = {"theta_E": rng.uniform(0.7, 1.2), "e1": rng.uniform(-0.15, 0.15), "e2": rng.uniform(-0.15, 0.15),
            "center_x": rng.uniform(-0.05, 0.05), "center_y": rng.uniform(-0.05, 0.05),
            "gamma1": rng.uniform(-0.04, 0.04), "gamma2": rng.uniform(-0.04, 0.04)}
    source_center = tuple(rng.uniform(-0.1, 0.1, size=2))
    return LensSettings(lens={key: float(value) for key, value in lens.items()},
                        source_center=tuple(float(c) for c in source_center))


def write_simulated_lenses(n, out_dir, seed=0):
    """Simulate ``n`` lenses (:func:`random_lens_settings`, :func:`simulate_lens`) as FITS cut-outs and a table.

    Writes ``out_dir/lens_<k>.fits`` and ``out_dir/lenses.ecsv`` (Gaussian PSF ``psf_fwhm``, starts at
    θ_E = 1″ and the centre, the truth as ``true_<parameter>`` columns).

    Returns:
        the path of the table.
    """
    check_count("n", n)
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for k in range(n):
        settings = random_lens_settings(seed + k)
        simulation = simulate_lens(seed=seed + k, settings=settings)
        image = f"lens_{k:04d}.fits"
        with atomic_path(out_dir / image) as temporary:
            fits.PrimaryHDU(simulation.kwargs_data["image_data"].astype(np.float32)).writeto(temporary, overwrite=True)
        rows.append({"name": f"lens_{k:04d}", "image": image, "pixel_scale": settings.pixel_scale,
                     "background_rms": settings.background_rms, "exposure_time": settings.exposure_time,
                     "psf_fwhm": settings.psf_fwhm,
                     **{f"true_{key}": value for key, value in settings.lens.items()}})
    table = Table(rows=rows)
    with atomic_path(out_dir / "lenses.ecsv") as temporary:
        table.write(temporary, format="ascii.ecsv", overwrite=True)
    return out_dir / "lenses.ecsv"
