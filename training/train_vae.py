"""Train a single-band HST-like VAE as a new model of yours: ``lenstronomy-vae train`` (same arguments).

Small, on a CPU (about 20 minutes on 2 cores):
    python training/simulate_hst.py --n 30000 --seed 2026 --out data/hst64.h5 --processes 2
    python training/train_vae.py --data data/hst64.h5 --epochs 40 --name my_hst64
Large, on one or several GPUs (MirroredStrategy is used automatically with more than one GPU):
    python training/simulate_hst.py --n 200000 --out data/hst64.h5 --processes 16
    python training/train_vae.py --data data/hst64.h5 --epochs 100 --batch-size 256 --name my_hst64
The model goes to your model directory ($LENSTRONOMY_VAE_HOME/models, default
~/.lenstronomy_vae/models) and loads by name (``model="my_hst64"``); ``--default`` makes it the
model used when none is named. An interrupted run resumes from ``--checkpoint-dir`` (default
runs/<name>) when started again.
"""

import sys

from lenstronomy_vae.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
