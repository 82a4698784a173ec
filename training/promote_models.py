"""Maintainers: make models trained into your model directory the shipped ones in ``weights/``.

Each ``SOURCE=TARGET`` pair copies the model file of ``SOURCE`` (a model of your model directory,
``$LENSTRONOMY_VAE_HOME/models``) to ``weights/TARGET.keras`` and puts its manifest entry under
``TARGET``, with ``file`` and ``parent`` renamed by the same pairs; the files are written atomically
and checked against the entry's SHA-256. The previous shipped files are replaced (git keeps them).

    python training/promote_models.py v3_lsst45=lsst45 v3_lsst45_deblender=lsst45_deblender \\
        v3_lsst45_regressor_calibrated=lsst45_regressor
"""

import argparse
import hashlib
import json
import pathlib
import shutil

from lenstronomy_vae.networks.manifest import model_directory
from lenstronomy_vae.utils.files import atomic_path, write_json

WEIGHTS = pathlib.Path(__file__).resolve().parent.parent / "weights"


def sha256(path):
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def promote(pairs, source_dir, weights_dir=WEIGHTS):
    """Copy each ``(source, target)`` model from ``source_dir`` into ``weights_dir``; return the new entries."""
    source_dir, weights_dir = pathlib.Path(source_dir), pathlib.Path(weights_dir)
    sources = json.loads((source_dir / "manifest.json").read_text())["models"]
    manifest = json.loads((weights_dir / "manifest.json").read_text())
    renamed = dict(pairs)
    for source, target in pairs:
        if source not in sources:
            raise ValueError(f"{source!r} is not in {source_dir / 'manifest.json'}; it has {sorted(sources)}")
        entry = dict(sources[source])
        if sha256(source_dir / entry["file"]) != entry["sha256"]:
            raise ValueError(f"{source_dir / entry['file']} does not match its manifest's SHA-256")
        with atomic_path(weights_dir / f"{target}.keras") as temporary:
            shutil.copyfile(source_dir / entry["file"], temporary)
        entry["file"] = f"{target}.keras"
        if "parent" in entry:
            entry["parent"] = renamed.get(entry["parent"], entry["parent"])
        manifest["models"][target] = entry
    write_json(weights_dir / "manifest.json", manifest)
    return {target: manifest["models"][target] for _, target in pairs}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pairs", nargs="+", help="SOURCE=TARGET: a model of your model directory and its shipped name")
    parser.add_argument("--from", dest="source_dir", default=None, help="model directory (default: yours)")
    args = parser.parse_args()
    pairs = [tuple(pair.split("=", 1)) for pair in args.pairs]
    if any(len(pair) != 2 or not all(pair) for pair in pairs):
        raise SystemExit(f"each pair must be SOURCE=TARGET, got {args.pairs}")
    for target, entry in promote(pairs, model_directory(args.source_dir)).items():
        print(f"{target}: {entry['file']} ({entry['size_bytes'] / 1e6:.1f} MB, sha256 {entry['sha256'][:12]}…)")


if __name__ == "__main__":
    main()
