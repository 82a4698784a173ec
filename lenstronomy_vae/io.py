"""Output files that are never half-written (temporary name, then rename), and JSON configurations."""

import contextlib
import dataclasses
import json
import os
import pathlib
import tempfile


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; on success rename it to ``path``, else delete it.

    The temporary name keeps the suffix (Keras checks for ``.keras``). A crash or exception
    inside the block leaves any previous ``path`` untouched.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(handle)
    os.chmod(temporary, 0o644)  # mkstemp's 0600 would make outputs private to their writer
    try:
        yield pathlib.Path(temporary)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def write_json(path, data):
    """Write ``data`` as indented JSON, atomically."""
    with atomic_path(path) as temporary:
        with open(temporary, "w") as f:
            json.dump(data, f, indent=2, sort_keys=False)
            f.write("\n")


class JSONConfig:
    """Mixin for dataclass configurations stored as JSON beside the data they generated."""

    def to_dict(self):
        """A JSON-ready dict (tuples become lists)."""
        return {key: list(value) if isinstance(value, tuple) else value
                for key, value in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data):
        """Inverse of :meth:`to_dict`; unknown fields are an error naming them."""
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} fields {unknown}; known fields: {sorted(known)}")
        return cls(**{key: tuple(value) if isinstance(value, list) else value for key, value in data.items()})


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
    import h5py

    with atomic_path(path) as temporary:
        with h5py.File(temporary, "w") as f:
            f.attrs["format"] = file_format
            f.attrs["config"] = json.dumps(config.to_dict())
            f.attrs["seed"] = seed
            for name, array in arrays.items():
                f.create_dataset(name, data=array)


def load_arrays_hdf5(path, file_format, names, kind):
    """Read what :func:`save_arrays_hdf5` wrote: (config dict, seed, {name: array}).

    ``kind`` names the set class in the error message.

    Raises:
        ValueError: the file's ``format`` attribute is not ``file_format``.
    """
    import h5py

    with h5py.File(path, "r") as f:
        if f.attrs.get("format") != file_format:
            raise ValueError(f"{path} is not a {kind} file (format attribute {f.attrs.get('format')!r}, "
                             f"expected {file_format!r}); write it with {kind}.save_hdf5")
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
