"""Simulated sets on disk: HDF5 files with their generating configuration, never half-written."""

import json
import pathlib

import h5py

from lenstronomy_vae.utils.files import atomic_path


def save_arrays_hdf5(path, file_format, config, seed, arrays):
    """Write named arrays with their generating configuration to HDF5, atomically.

    Args:
        path: the HDF5 file.
        file_format: string stored in the attribute ``format`` and checked on reading.
        config: a :class:`JSONConfig`, stored as JSON in the attribute ``config``.
        seed: the seed that generated the arrays.
        arrays: name → array. Stored uncompressed: noisy float32 pixels shrink by only ~15 %
            and writing takes 5× longer.
    """
    with atomic_path(path) as temporary:
        with h5py.File(temporary, "w") as f:
            f.attrs["format"] = file_format
            f.attrs["config"] = json.dumps(config.to_dict())
            f.attrs["seed"] = seed
            for name, array in arrays.items():
                f.create_dataset(name, data=array)


_WRITERS = "write it with 'lenstronomy-vae simulate' or 'simulate-blends'"


def file_format(path):
    """The ``format`` attribute of a set's HDF5 file (None when it has none).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not HDF5.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such HDF5 file: {path}")
    if not h5py.is_hdf5(path):
        raise ValueError(f"{path} is not an HDF5 file; {_WRITERS}")
    with h5py.File(path, "r") as f:
        return f.attrs.get("format")


def load_arrays_hdf5(path, expected_format, names, kind):
    """Read what :func:`save_arrays_hdf5` wrote: (config dict, seed, {name: array}).

    ``kind`` names the set class in the error message.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not an HDF5 file, or its ``format`` attribute is not ``expected_format``.
    """
    found = file_format(path)
    if found != expected_format:
        raise ValueError(f"{path} is not a {kind} file (format attribute {found!r}, expected {expected_format!r}); "
                         f"{_WRITERS}")
    with h5py.File(path, "r") as f:
        return json.loads(f.attrs["config"]), int(f.attrs["seed"]), {name: f[name][()] for name in names}


class HDF5Set:
    """Mixin of the simulated sets (dataclasses with ``config`` and ``seed``): save to and load from HDF5.

    A class sets ``FILE_FORMAT`` (checked on reading), ``ARRAYS`` (the array fields stored) and
    ``CONFIG`` (its configuration class, with ``from_dict``).
    """

    def save_hdf5(self, path):
        """Write the set to ``path`` atomically (a crash leaves any previous file intact)."""
        save_arrays_hdf5(path, self.FILE_FORMAT, self.config, self.seed,
                         {name: getattr(self, name) for name in self.ARRAYS})

    @classmethod
    def load_hdf5(cls, path):
        """Read a set written by :meth:`save_hdf5`."""
        config, seed, arrays = load_arrays_hdf5(path, cls.FILE_FORMAT, cls.ARRAYS, cls.__name__)
        return cls(**arrays, config=cls.CONFIG.from_dict(config), seed=seed)
