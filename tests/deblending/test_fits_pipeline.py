"""The FITS pipeline and the ``deblend`` command: outputs for any number of galaxies, the sky warning, the figure."""

import galsim
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from lenstronomy_vae.cli import main
from lenstronomy_vae.deblending.fits_pipeline import deblend_fits
from lenstronomy_vae.evaluation.figures import binned, display_binning, plot_deblend_outputs, plot_deblended_scene
from lenstronomy_vae.networks.deblender import Deblender
from lenstronomy_vae.sims.surveys import get_survey
from lenstronomy_vae.training.shipping import ship, training_range_of

LSST = get_survey("lsst")
SKY = np.asarray(LSST.sky_levels)  # electrons per pixel


def field(positions, size=50, seed=0):
    """A (bands, size, size) LSST-like cube [electrons]: exponential galaxies of 4e5 e- at (x, y), Poisson noise."""
    image = np.zeros((size, size, 6))
    for x, y in positions:
        for b, band in enumerate(LSST.bands):
            galaxy = galsim.Convolve(galsim.Exponential(half_light_radius=0.5, flux=4e5), LSST.psf(band))
            offset = (x - (size - 1) / 2, y - (size - 1) / 2)
            image[:, :, b] += galaxy.drawImage(nx=size, ny=size, scale=LSST.pixel_scale, offset=offset).array
    noisy = np.random.default_rng(seed).poisson(image + SKY) - SKY
    return np.moveaxis(noisy, -1, 0)


@pytest.fixture(scope="module")
def deblender_path(lsst_vae, tmp_path_factory):
    path = tmp_path_factory.mktemp("deblender") / "tiny_deblender.keras"
    Deblender.from_vae(lsst_vae).save(path)
    return str(path)


def deblend(cube, tmp_path, deblender_path, name):
    """Run ``lenstronomy-vae deblend`` on ``cube``; return (exit code, output directory)."""
    path = tmp_path / f"{name}.fits"
    fits.PrimaryHDU(cube).writeto(path)
    out = tmp_path / name
    # The tiny untrained decoder's residuals would ask for more galaxies: detections only.
    return main(["deblend", str(path), "--deblender", deblender_path, "--out", str(out), "--max-new-sources", "0"]), out


def test_a_field_without_detections_gives_empty_outputs(tmp_path, deblender_path, capsys):
    code, out = deblend(field([]), tmp_path, deblender_path, "empty")
    captured = capsys.readouterr()
    assert code == 0 and "0 galaxies deblended" in captured.out and "error" not in captured.err
    table = Table.read(out / "galaxies.ecsv")  # an empty table reads back, with every column
    assert len(table) == 0 and {"x", "y", "flux_i", "e1", "z_0", "z_3", "row0", "out_of_range",
                                "out_of_range_reasons", "footprint_chi2", "likely_merged"} <= set(table.colnames)
    with fits.open(out / "deblended.fits") as hdus:
        assert len(hdus["GALAXIES"].data) == 0 and hdus["MODEL"].data.shape == (6, 50, 50)
        assert not hdus["MODEL"].data.any()
    assert (out / "deblended.png").read_bytes()[:4] == b"\x89PNG"


def test_one_galaxy_is_deblended_in_the_singular_with_a_figure(tmp_path, deblender_path, capsys):
    code, out = deblend(field([(25.0, 24.0)]), tmp_path, deblender_path, "one")
    captured = capsys.readouterr()
    assert code == 0 and "1 galaxy deblended" in captured.out
    # the only warning: a deblender given by path has no recorded training range
    assert captured.err.count("warning") == 1 and "warning: deblender has no recorded training range" in captured.err
    assert f"{out / 'deblended.png'}" in captured.out
    assert (out / "deblended.png").stat().st_size > 10_000
    assert sorted(path.name for path in out.iterdir()) == ["deblended.fits", "deblended.png", "galaxies.ecsv"]
    table = Table.read(out / "galaxies.ecsv")
    assert len(table) == 1 and abs(table["x"][0] - 25.0) < 0.5 and abs(table["y"][0] - 24.0) < 0.5
    assert not table["out_of_range"][0] and not table["out_of_range_reasons"][0]  # no range: nothing flagged


def test_the_command_warns_of_a_sky_left_in_the_image(tmp_path, deblender_path, capsys):
    code, _ = deblend(field([(25.0, 24.0)]) + 50.0, tmp_path, deblender_path, "sky")
    err = capsys.readouterr().err
    assert code == 0
    assert err.count("lenstronomy-vae deblend: warning: the image's background is not consistent") == 1
    assert "u +5" in err and "subtract the sky" in err


@pytest.mark.parametrize("bands", [("u", "g", "r", "i", "z", "y"), ("F814W",)])
def test_the_deblended_scene_figure_draws_colour_or_one_band(tmp_path, bands):
    rng = np.random.default_rng(0)
    image = rng.normal(0.0, 1.0, (30, 40, len(bands)))
    model = np.zeros_like(image)
    model[10:15, 20:25] = 50.0
    path = tmp_path / "scene.png"
    plot_deblended_scene(image + model, model, image, [22.0], [12.0], bands, path)
    assert path.read_bytes()[:4] == b"\x89PNG" and [p.name for p in tmp_path.iterdir()] == ["scene.png"]


def test_binning_averages_whole_blocks_and_drops_the_ragged_edge():
    image = np.arange(7 * 5, dtype=np.float64).reshape(7, 5)
    shown = binned(image, 2)
    assert shown.shape == (3, 2) and shown.dtype == np.float32
    assert shown[0, 0] == np.mean(image[:2, :2]) and shown[2, 1] == np.mean(image[4:6, 2:4])
    assert binned(np.ones((4, 4, 6)), 2).shape == (2, 2, 6)
    assert display_binning((1024, 1024)) == 1 and display_binning((1025, 300)) == 2
    assert display_binning((4096, 4096)) == 4


def test_a_large_field_is_drawn_binned_from_the_written_file(tmp_path, monkeypatch):
    import lenstronomy_vae.evaluation.figures as figures

    monkeypatch.setattr(figures, "DISPLAY_PIXELS", 16)  # a 40 × 50 field is then "large": 4 × 4 blocks
    model = np.zeros((6, 40, 50), dtype=np.float32)
    model[3, 20:24, 32:36] = 100.0
    residual = np.random.default_rng(1).normal(0.0, 1.0, model.shape).astype(np.float32)
    header = fits.Header({"BANDS": "u g r i z y"})
    table = fits.BinTableHDU.from_columns([fits.Column("x", "D", array=np.arange(150.0) % 50),
                                           fits.Column("y", "D", array=np.arange(150.0) % 40)], name="GALAXIES")
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(model, header, name="MODEL"),
                  fits.ImageHDU(residual, header, name="RESIDUAL"), table]).writeto(tmp_path / "deblended.fits")
    drawn = {}
    monkeypatch.setattr(figures, "plot_deblended_scene",
                        lambda image, model, residual, x, y, bands, path, factor: drawn.update(
                            shape=model.shape, factor=factor, peak=model.max(), n=len(x)))
    plot_deblend_outputs(tmp_path / "deblended.fits", tmp_path / "scene.png")
    assert drawn == {"shape": (10, 12, 6), "factor": 4, "peak": 100.0, "n": 150}  # the 4 × 4 source fills one block
    monkeypatch.undo()
    monkeypatch.setattr(figures, "DISPLAY_PIXELS", 16)
    plot_deblend_outputs(tmp_path / "deblended.fits", tmp_path / "scene.png")  # 150 detections: circled, unnumbered
    assert (tmp_path / "scene.png").read_bytes()[:4] == b"\x89PNG"


@pytest.fixture
def ranged_deblender(lsst_vae, lsst_scenes, user_home):
    """The tiny deblender as the user's model 'ranged', with the 24 LSST-like scenes' training range."""
    deblender = Deblender.from_vae(lsst_vae)
    ship(deblender, "ranged", None, {"n": 24}, {}, kind="deblender",
         training_range=training_range_of(lsst_scenes, deblender, encoder_input=lsst_scenes.blend))
    return "ranged"


def bright_and_normal(lsst_scenes):
    """(bands, 45, 90) cube: scene 8's galaxy as simulated (x = 22) and 30 times brighter (x = 67)."""
    scene = lsst_scenes.blend[8].astype(np.float64)
    return np.moveaxis(np.concatenate([scene, scene + 30 * lsst_scenes.isolated[8, 0]], axis=1), -1, 0)


def test_the_table_flags_galaxies_outside_the_training_range_and_the_command_warns(tmp_path, ranged_deblender,
                                                                                   lsst_scenes, capsys):
    code, out = deblend(bright_and_normal(lsst_scenes), tmp_path, ranged_deblender, "bright")
    err = capsys.readouterr().err
    assert code == 0
    assert err.count("warning") == 1
    assert "warning: 1 of 2 deblended galaxies are outside deblender's training range" in err
    table = Table.read(out / "galaxies.ecsv")
    table.sort("x")
    assert list(table["out_of_range"]) == [False, True] and table["out_of_range"].dtype == bool
    assert not table["out_of_range_reasons"][0]  # empty, read back as masked
    reasons = table["out_of_range_reasons"][1]
    assert reasons.startswith("peak_") and "; stamp_flux_" in reasons
    with fits.open(out / "deblended.fits") as hdus:
        assert list(hdus["GALAXIES"].data["out_of_range"]) == list(Table.read(out / "galaxies.ecsv")["out_of_range"])


def test_deblend_fits_returns_the_flags(tmp_path, ranged_deblender, lsst_scenes):
    path = tmp_path / "cube.fits"
    fits.PrimaryHDU(bright_and_normal(lsst_scenes)).writeto(path)
    with pytest.warns(UserWarning, match="1 of 2 deblended galaxies are outside"):
        table = deblend_fits(path, tmp_path / "out", deblender=ranged_deblender, max_new_sources=0)
    assert sorted(table["out_of_range"]) == [False, True]
