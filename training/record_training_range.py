"""Record the training range and latent prior of the shipped lsst45 and lsst45_deblender in weights/manifest.json.

Their training sets (training/simulate_lsst.sh) are not shipped; this regenerates the first scenes
of each with the recipe's config and seed (a scene depends only on (seed, index)), drops the
held-out and validation ones (the first 1,000 isolated + 1,000, and 500 + 500 blends, as in
training/train_lsst.sh) and measures the next ``--n`` training scenes: percentiles need no more.
``training_range``: as training records it (:func:`~lenstronomy_vae.training.shipping.training_range_of`).
``latent_prior``: the lsst45 encoder's latent means of the scenes' isolated noisy targets, for both
(:func:`~lenstronomy_vae.training.shipping.latent_prior_of`; the deblender's decoder is lsst45's).
Only the entries named by ``--record`` are written; files, hashes and everything else stay as they are.

    python training/record_training_range.py --n 2000 [--processes 2] [--record training_range latent_prior]
"""

import argparse

from lenstronomy_vae.networks.deblender import Deblender
from lenstronomy_vae.networks.model_files import MANIFEST_NAME, load_network, read_manifest, weights_dir
from lenstronomy_vae.networks.vae import GalaxyVAE
from lenstronomy_vae.sims.blends import BlendSimConfig, simulate_blends
from lenstronomy_vae.training.shipping import latent_prior_of, training_range_of
from lenstronomy_vae.utils.files import write_json

# name, network class, simulate-blends options of its training set, scenes before the training ones
SHIPPED = (("lsst45", GalaxyVAE, "--objects 1 1 --seed 10", dict(n_objects_range=(1, 1)), 10, 2000),
           ("lsst45_deblender", Deblender, "--seed 11", dict(), 11, 1000))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="training scenes measured per model")
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--record", nargs="+", choices=("training_range", "latent_prior"),
                        default=["training_range", "latent_prior"], help="the manifest entries to write")
    args = parser.parse_args()
    manifest = read_manifest()
    lsst45 = load_network("lsst45", GalaxyVAE)  # whose encoder places the galaxies of both priors
    for name, kind, options, config, seed, skip in SHIPPED:
        entry = manifest["models"][name]
        scenes = simulate_blends(skip + args.n, BlendSimConfig(**config), seed=seed, processes=args.processes)
        _, train = scenes.split(skip)
        network = load_network(name, kind)
        source = (f"scenes {skip}-{skip + args.n - 1} of `simulate-blends --n 12000 {options}` (training/"
                  f"simulate_lsst.sh), regenerated: {args.n} of the {entry['training_data']['train']} training scenes")
        if "training_range" in args.record:
            encoder_input = train.blend if kind is Deblender else None
            entry["training_range"] = training_range_of(train, network, encoder_input=encoder_input, source=source)
            print(name, entry["training_range"], flush=True)
        if "latent_prior" in args.record:
            entry["latent_prior"] = latent_prior_of(lsst45, train.target_noisy, f"isolated noisy targets of {source}")
            print(name, "latent prior std", [round(s, 2) for s in entry["latent_prior"]["std"]], flush=True)
    write_json(weights_dir() / MANIFEST_NAME, manifest)


if __name__ == "__main__":
    main()
