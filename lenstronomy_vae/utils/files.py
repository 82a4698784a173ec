"""Output files that are never half-written: a temporary name beside the target, then a rename."""

import contextlib
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
