import numpy as np
import pytest
from astropy.io import fits

from lenstronomy_vae.utils.fits_io import append_stamp_cube, read_image


def test_stamps_streamed_into_a_cube_read_back_exactly(tmp_path):
    path = tmp_path / "cube.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.ones((2, 5, 5), np.float32), name="MODEL")]).writeto(path)
    stamps = np.random.default_rng(0).normal(size=(3, 2, 4, 4))
    append_stamp_cube(path, iter(stamps), 3, (2, 4, 4), fits.Header({"BANDS": "g r"}), "STAMPS")
    append_stamp_cube(path, iter(()), 0, (2, 4, 4), fits.Header(), "EMPTY")
    with fits.open(path) as hdus:
        assert [hdu.name for hdu in hdus] == ["PRIMARY", "MODEL", "STAMPS", "EMPTY"]
        assert np.array_equal(hdus["STAMPS"].data, stamps.astype(np.float32))
        assert hdus["STAMPS"].header["BANDS"] == "g r"
        assert hdus["EMPTY"].header["NAXIS4"] == 0


def test_an_image_reads_as_the_asked_type(tmp_path):
    fits.PrimaryHDU(np.arange(24.0).reshape(1, 2, 3, 4)).writeto(tmp_path / "cube.fits")
    cube, scale = read_image(tmp_path / "cube.fits", ndim=3, dtype=np.float32)
    assert cube.dtype == np.float32 and cube.shape == (2, 3, 4) and cube[1, 2, 3] == 23.0 and scale is None

@pytest.mark.parametrize("stamps, message", [([np.zeros((2, 4, 5))], r"stamp 0 of S has shape \(2, 4, 5\)"),
                                             ([np.zeros((2, 4, 4))], "S: 1 stamps written, 2 announced")])
def test_a_stamp_of_the_wrong_shape_or_number_is_refused(tmp_path, stamps, message):
    path = tmp_path / "cube.fits"
    fits.PrimaryHDU().writeto(path)
    with pytest.raises(ValueError, match=message):
        append_stamp_cube(path, stamps, 2, (2, 4, 4), fits.Header(), "S")
