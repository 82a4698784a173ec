"""Train the single-band HST-like VAE on a simulated HDF5 set and ship it with its manifest entry.

Small, on a CPU (about an hour on 2 cores):
    python training/simulate_hst.py --n 20000 --out data/hst64.h5 --processes 2
    python training/train_vae.py --data data/hst64.h5 --epochs 30 --name hst64
Large, on one or several GPUs (MirroredStrategy is used automatically with more than one GPU):
    python training/simulate_hst.py --n 200000 --out data/hst64.h5 --processes 16
    python training/train_vae.py --data data/hst64.h5 --epochs 100 --batch-size 256 --name hst64
An interrupted run resumes from ``--checkpoint-dir`` when started again with the same arguments.
"""

import argparse
import json
import os
import pathlib
import time

import tensorflow as tf

from lenstronomy_vae.evaluate import reconstruction_metrics
from lenstronomy_vae.manifest import add_to_manifest, export_model
from lenstronomy_vae.simulate import GalaxySet
from lenstronomy_vae.training import train_vae
from lenstronomy_vae.vae import VAEConfig

REPO = pathlib.Path(__file__).resolve().parents[1]


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="HDF5 file written by simulate_hst.py")
    parser.add_argument("--name", default="hst64", help="model name in the manifest")
    parser.add_argument("--weights-dir", default=str(REPO / "weights"), help="where the model and manifest go")
    parser.add_argument("--checkpoint-dir", default=None, help="default: runs/<name>")
    parser.add_argument("--held-out", type=int, default=1000, help="galaxies kept for the final metrics")
    parser.add_argument("--validation", type=int, default=1000, help="galaxies for the validation loss")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--kl-warmup-epochs", type=int, default=5)
    parser.add_argument("--latent-dim", type=int, default=32)
    parser.add_argument("--encoder-filters", type=int, nargs="+", default=[16, 32, 64, 128])
    parser.add_argument("--decoder-filters", type=int, nargs="+", default=[64, 32, 16, 8])
    parser.add_argument("--dense-units", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--default", action="store_true", help="make this the default shipped model")
    return parser.parse_args()


def main():
    args = parse_args()
    galaxies = GalaxySet.load_hdf5(args.data)
    held_out, rest = galaxies.split(args.held_out)
    validation, train = rest.split(args.validation)
    config = VAEConfig(
        image_size=galaxies.observed.shape[1],
        bands=galaxies.bands,
        latent_dim=args.latent_dim,
        encoder_filters=args.encoder_filters,
        decoder_filters=args.decoder_filters,
        dense_units=args.dense_units,
        pixel_scale=galaxies.pixel_scale,
    )
    checkpoint_dir = args.checkpoint_dir or str(REPO / "runs" / args.name)
    vae, state = train_vae(
        train, validation, config, args.epochs, checkpoint_dir,
        batch_size=args.batch_size, learning_rate=args.learning_rate,
        kl_warmup_epochs=args.kl_warmup_epochs, seed=args.seed,
    )
    start = time.perf_counter()
    metrics = reconstruction_metrics(vae, held_out)
    summary = {
        "held_out_galaxies": len(held_out),
        "median_ssim": metrics["median_ssim"],
        "median_abs_flux_error": metrics["median_abs_flux_error"],
        "median_flux_error": metrics["median_flux_error"],
        "epochs": state["epochs_done"],
        "final_train_loss": state["history"][-1].get("loss"),
        "final_val_loss": state["history"][-1].get("val_loss"),
        "train_seconds_last_run": state.get("train_seconds_this_run"),
        "hardware": f"{os.cpu_count()} CPU cores, {len(tf.config.list_physical_devices('GPU'))} GPU(s)",
    }
    model_file = export_model(vae, pathlib.Path(args.weights_dir) / f"{args.name}.keras")
    training_data = {
        "file": pathlib.Path(args.data).name,
        "train": len(train), "validation": len(validation), "held_out": len(held_out),
        "simulation": galaxies.config.to_dict(),
    }
    add_to_manifest(args.weights_dir, args.name, model_file, vae, training_data, summary, default=args.default)
    print(json.dumps({**summary, "evaluation_seconds": time.perf_counter() - start,
                      "model_bytes": model_file.stat().st_size}, indent=2))


if __name__ == "__main__":
    main()
