"""Small tools every layer uses: files written atomically, argument checks, FITS reading, parallel maps."""

from lenstronomy_vae.utils.checks import check_count, check_finite, check_seed, checked_range
from lenstronomy_vae.utils.files import atomic_path, write_json
from lenstronomy_vae.utils.fits_io import read_image
from lenstronomy_vae.utils.parallel import chunk_bounds, parallel_map

__all__ = ["atomic_path", "check_count", "check_finite", "check_seed", "checked_range", "chunk_bounds",
           "parallel_map", "read_image", "write_json"]
