"""The simulated sets that training and the report read, with errors that name a missing or foreign file."""

import pathlib

import h5py

from lenstronomy_vae.sims.blends import BlendSet
from lenstronomy_vae.sims.galaxies import GalaxySet

_WRITERS = "write it with 'lenstronomy-vae simulate' or 'simulate-blends'"


def check_hdf5_file(path):
    """Raise FileNotFoundError or ValueError, naming ``path``, unless it is an existing HDF5 file."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such HDF5 file: {path}")
    if not h5py.is_hdf5(path):
        raise ValueError(f"{path} is not an HDF5 file; {_WRITERS}")


def load_stamp_set(path):
    """A :class:`~lenstronomy_vae.sims.galaxies.GalaxySet` or :class:`~lenstronomy_vae.sims.blends.BlendSet` from HDF5.

    Both have ``observed``, ``intrinsic`` and ``noise_sigma`` (a BlendSet's are its isolated
    targets'), ``bands``, ``pixel_scale`` and ``split``: what VAE training reads.

    Raises:
        FileNotFoundError, ValueError: a missing file, or one that holds neither.
    """
    check_hdf5_file(path)
    with h5py.File(path, "r") as f:
        file_format = f.attrs.get("format")
    kinds = {GalaxySet.FILE_FORMAT: GalaxySet, BlendSet.FILE_FORMAT: BlendSet}
    if file_format not in kinds:
        raise ValueError(f"{path} holds neither galaxies nor blends (format attribute {file_format!r}); {_WRITERS}")
    return kinds[file_format].load_hdf5(path)


def load_blend_set(path):
    """A :class:`~lenstronomy_vae.sims.blends.BlendSet` from HDF5.

    Raises:
        FileNotFoundError, ValueError: a missing file, or one that is not a blend set.
    """
    check_hdf5_file(path)
    return BlendSet.load_hdf5(path)
