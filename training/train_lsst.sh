#!/usr/bin/env bash
# Train the LSST-like networks in order — the 6-band VAE, its deblender, the latent regressor,
# calibrated on its own sheared sets — then write the side-by-side report.
# Needs the sets of training/simulate_lsst.sh.
# The models go to your model directory ($LENSTRONOMY_VAE_HOME/models, default
# ~/.lenstronomy_vae/models) as ${PREFIX}lsst45, ${PREFIX}lsst45_deblender, ${PREFIX}lsst45_regressor
# and ${PREFIX}lsst45_regressor_calibrated (PREFIX defaults to my_); the shipped ones stay as they are.
# Each step checkpoints every epoch under runs/<name>, and a step whose model exists already is
# skipped: run the script again to resume.
# On a CPU (2 cores) it takes about an hour; on GPUs raise EPOCHS and BATCH (several GPUs are
# used through tf.distribute.MirroredStrategy automatically).
set -euo pipefail
EPOCHS=${EPOCHS:-40}
BATCH=${BATCH:-64}
PREFIX=${PREFIX-my_}
VAE=${PREFIX}lsst45
DEBLENDER=${PREFIX}lsst45_deblender
REGRESSOR=${PREFIX}lsst45_regressor
# Whether model $1 is already in your model directory.
exists() {
    lenstronomy-vae models --json | python -c "import json, sys; sys.exit('$1' not in json.load(sys.stdin)['user_models'])"
}
exists "$VAE" || lenstronomy-vae train --data data/lsst_isolated.h5 --name "$VAE" --epochs "$EPOCHS" \
    --batch-size "$BATCH" --latent-dim 32 --encoder-filters 16 32 64 128 --decoder-filters 64 32 16 --dense-units 256
exists "$DEBLENDER" || lenstronomy-vae train-deblender --data data/lsst_blends.h5 --vae "$VAE" --name "$DEBLENDER" \
    --epochs "$((EPOCHS / 2))" --batch-size "$BATCH" --latent-weight 0.1
exists "$REGRESSOR" || lenstronomy-vae train-regressor --data data/lsst_blends.h5 --encoder "$DEBLENDER" \
    --name "$REGRESSOR" --epochs "$((EPOCHS / 2))" --batch-size "$BATCH"
exists "${REGRESSOR}_calibrated" || lenstronomy-vae calibrate-regressor --regressor "$REGRESSOR" \
    --sets data/lsst_shear_14_pp.h5 data/lsst_shear_14_mm.h5 data/lsst_shear_14_pp_turned.h5 data/lsst_shear_14_mm_turned.h5
lenstronomy-vae report --data data/lsst_blends_test.h5 --deblender "$DEBLENDER" --regressor "${REGRESSOR}_calibrated" \
    --shear-sets data/lsst_shear_13_pp.h5 data/lsst_shear_13_mm.h5 data/lsst_shear_13_pp_turned.h5 \
    data/lsst_shear_13_mm_turned.h5 --map-scenes "${MAP_SCENES:-200}" --out runs/report
