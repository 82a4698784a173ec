"""Record the latent prior of a model trained before training recorded one, from its own training file.

Training writes ``latent_prior`` into the manifest entry (the VAE encoder's latent means of the training
galaxies, :mod:`lenstronomy_vae.networks.latent_prior`), which MAP refinement uses; a model trained
before that has none, and MAP falls back to N(0, 1). Given the model's training file, this takes its
training rows (after the held-out and validation ones, as the manifest's ``training_data`` records them)
and records the prior as training would have: the first 2,000 isolated noisy galaxies (a blend set's
targets) through the encoder of the VAE (a deblender's parent). Only ``latent_prior`` is written.

    python training/record_latent_prior.py lsst45_wide data/lsst_isolated.h5
    python training/record_latent_prior.py lsst45_wide_deblender data/lsst_blends.h5
"""

import argparse
import pathlib
import sys

from lenstronomy_vae.networks.model_files import MANIFEST_NAME, load_network, read_manifest, resolve
from lenstronomy_vae.networks.vae import GalaxyVAE
from lenstronomy_vae.training.shipping import latent_prior_of, split_three
from lenstronomy_vae.training.vae import load_stamp_set
from lenstronomy_vae.utils.files import write_json


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="model name (shipped or yours)")
    parser.add_argument("data", help="the HDF5 file the model was trained on")
    args = parser.parse_args(argv)
    path, entry = resolve(args.model)
    if entry is None:
        parser.error(f"{args.model} is a path, not a model with a manifest entry")
    recorded = entry["training_data"]
    if pathlib.Path(args.data).name != recorded["file"]:
        parser.error(f"{args.model} was trained on {recorded['file']}, not {pathlib.Path(args.data).name}")
    _, _, train_set = split_three(load_stamp_set(args.data), recorded["held_out"], recorded["validation"])
    if len(train_set) != recorded["train"]:
        parser.error(f"{args.data} leaves {len(train_set)} training rows, the model was trained on "
                     f"{recorded['train']}: not the same file")
    vae_name = entry.get("parent", args.model) if entry["kind"] == "deblender" else args.model
    source = (f"the isolated noisy galaxies of the training rows of {recorded['file']}, through {vae_name}'s encoder "
              "(training/record_latent_prior.py)")
    prior = latent_prior_of(load_network(vae_name, GalaxyVAE), train_set.observed, source)
    manifest = read_manifest(path.parent)
    manifest["models"][args.model]["latent_prior"] = prior
    write_json(path.parent / MANIFEST_NAME, manifest)
    spread = f"{min(prior['std']):.2f}–{max(prior['std']):.2f}"
    print(f"{args.model}: latent prior of {prior['stamps']} galaxies, σ {spread}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
