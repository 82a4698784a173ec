"""Train the weak-lensing regressor on a frozen encoder's latent space, calibrate its shear response, ship it."""

import pathlib

import numpy as np

from lenstronomy_vae.evaluation.report import regressor_errors, regressor_shear_bias, summarise
from lenstronomy_vae.networks.manifest import check_new_model
from lenstronomy_vae.networks.model_files import is_model_path, load_network, resolve
from lenstronomy_vae.networks.regressor import ALL_OUTPUTS, LatentRegressor
from lenstronomy_vae.sims.blends import BlendSet
from lenstronomy_vae.training.arrays import regression_arrays
from lenstronomy_vae.training.loop import check_training_options, cosine_adam, fit_resumable, run_summary
from lenstronomy_vae.training.shipping import ship, split_three, training_data_entry


def calibrate_shear_response(regressor, plus, minus, plus_turned, minus_turned):
    """The regressor with its shear response measured on sheared simulations, and that measurement.

    The response R_i = 1 + m_i, with m_i the multiplicative bias of the uncalibrated network on
    four sets of the same galaxies (shear +g, −g, and both with every galaxy turned by 90°; see
    :func:`lenstronomy_vae.evaluation.report.regressor_shear_bias`). Use sets that are independent of those
    on which the calibrated regressor's bias is then measured.

    Returns:
        (calibrated regressor, dict of the uncalibrated ``m``, ``m_err``, ``c``, ``c_err``, ``n``).
    """
    bias = regressor_shear_bias(regressor.with_shear_response((1.0, 1.0)), plus, minus, plus_turned, minus_turned)
    response = [1.0 + m for m in bias["m"]]
    if not all(np.isfinite(r) and r > 0.05 for r in response):
        raise ValueError(f"measured shear response {response} is not usable (needs a non-zero shear in both "
                         "components and a network that responds to it)")
    return regressor.with_shear_response(response), bias


def train_regressor(encoder_model, train_set, validation_set, epochs, checkpoint_dir, outputs=ALL_OUTPUTS,
                    hidden_units=(128, 128), batch_size=64, learning_rate=1e-3, seed=0, strategy=None, verbose=2):
    """Train (or resume training) a :class:`LatentRegressor` on blends.

    Args:
        encoder_model: trained :class:`~lenstronomy_vae.networks.deblender.Deblender` (or VAE) whose
            encoder defines the latent space; it stays frozen.
        train_set, validation_set: :class:`lenstronomy_vae.sims.blends.BlendSet` instances.
        epochs: total epochs planned (a resumed run trains only the remainder).
        checkpoint_dir: checkpoints and ``state.json``; an existing checkpoint is resumed.
        outputs: predicted quantities (see :class:`LatentRegressor`).
        hidden_units: widths of the hidden dense layers.
        batch_size, learning_rate, seed, strategy, verbose: as in
            :func:`lenstronomy_vae.training.vae.train_vae`.

    Returns:
        (regressor, state).

    Raises:
        ValueError: an unusable option (see :func:`lenstronomy_vae.training.loop.check_training_options`),
            or blends of another shape than the encoder's stamps.
    """
    check_training_options(epochs, batch_size, learning_rate, seed, checkpoint_dir)
    config = encoder_model.config
    expected = (config.image_size, config.image_size, config.num_bands)
    if train_set.blend.shape[1:] != expected:
        raise ValueError(f"blends have shape {train_set.blend.shape[1:]}; the encoder expects {expected} "
                         f"(bands {config.bands})")

    def build(steps_per_epoch):
        regressor = LatentRegressor.from_encoder_model(encoder_model, outputs=outputs, hidden_units=hidden_units,
                                                       seed=seed)
        regressor.compile(optimizer=cosine_adam(learning_rate, epochs * steps_per_epoch))
        return regressor

    def arrays(regressor):
        return (regression_arrays(train_set, regressor.normalization, regressor.outputs_names),
                regression_arrays(validation_set, regressor.normalization, regressor.outputs_names))

    return fit_resumable(build, arrays, len(train_set), epochs, checkpoint_dir, batch_size=batch_size, seed=seed,
                         strategy=strategy, verbose=verbose)


def train_and_ship_regressor(data, encoder_model, name, weights_dir, checkpoint_dir, epochs, outputs=ALL_OUTPUTS,
                             held_out=500, validation=500, batch_size=64, learning_rate=1e-3, seed=0, overwrite=False):
    """Train a latent regressor on blends, measure it on held-out scenes, write it with its manifest entry.

    Args:
        data: HDF5 file of a :class:`lenstronomy_vae.sims.blends.BlendSet`.
        encoder_model: deblender (or VAE) name (shipped or the user's) or ``.keras`` path whose
            encoder is read.
        name: model name in the manifest.
        weights_dir, checkpoint_dir, held_out, validation, overwrite: as in
            :func:`lenstronomy_vae.training.deblender.train_and_ship_deblender`.
        epochs, outputs, batch_size, learning_rate, seed: as in :func:`train_regressor`.

    Returns:
        dict: held-out σ(Δg1), σ(Δg2), slopes of predicted on true shape, redshift scatter.

    Raises:
        lenstronomy_vae.networks.ModelFileError: the name is taken (and not ``overwrite``) or unusable,
            or the encoder cannot be loaded; checked before training.
        ValueError: an unusable option or data file.
    """
    check_new_model(weights_dir, name, overwrite)
    check_training_options(epochs, batch_size, learning_rate, seed, checkpoint_dir)
    encoder = load_network(encoder_model)
    blends = BlendSet.load_hdf5(data)
    held_out_set, validation_set, train_set = split_three(blends, held_out, validation)
    regressor, state = train_regressor(encoder, train_set, validation_set, epochs, checkpoint_dir,
                                       outputs=outputs, batch_size=batch_size, learning_rate=learning_rate, seed=seed)
    de, dz = regressor_errors(regressor, held_out_set)
    truth = held_out_set.target_truth
    summary = {
        "held_out_scenes": len(held_out_set),
        **summarise(de),
        "slope_g1": float(np.polyfit(truth["g1"], truth["g1"] + de[:, 0], 1)[0]),
        "slope_g2": float(np.polyfit(truth["g2"], truth["g2"] + de[:, 1], 1)[0]),
        **({"sigma_dz_over_1pz": float(np.std(dz / (1 + truth["redshift"])))} if dz is not None else {}),
        **run_summary(state),
    }
    training_data = training_data_entry(data, blends, train_set, validation_set, held_out_set)
    return ship(regressor, name, weights_dir, training_data, summary, kind="regressor", parent=str(encoder_model),
                overwrite=overwrite)


def calibrate_and_ship(regressor, sets, weights_dir, name=None, overwrite=False):
    """Measure a regressor's shear response on sheared sets and write it calibrated, as a new model.

    The new manifest entry keeps the regressor's training data and held-out metrics (measured
    before calibration) and adds the calibration: ``metrics["shear_response"]`` and
    ``training_data["calibration"]`` (sets, shear, uncalibrated m and c, galaxies).

    Args:
        regressor: regressor name (shipped or the user's) or ``.keras`` path.
        sets: paths of the four BlendSet files (shear +g, −g, and both turned by 90°; same seed).
        weights_dir: model directory for the ``.keras`` file and ``manifest.json``; None for the
            user's (see :func:`lenstronomy_vae.training.shipping.ship`).
        name: model name in the manifest; default the regressor's name (or file stem) followed
            by ``_calibrated``.
        overwrite: allow a name that is shipped or already in ``weights_dir``; the file it
            named is kept.

    Returns:
        (calibrated regressor, uncalibrated bias dict of :func:`calibrate_shear_response`, ship summary).

    Raises:
        lenstronomy_vae.networks.ModelFileError: the name is taken (and not ``overwrite``) or unusable, or the
            regressor cannot be loaded.
        ValueError: an unusable set, or a response that cannot be used (see :func:`calibrate_shear_response`).
    """
    name = name or f"{pathlib.Path(regressor).stem if is_model_path(regressor) else regressor}_calibrated"
    check_new_model(weights_dir, name, overwrite)
    network = load_network(regressor, LatentRegressor)
    entry = resolve(regressor)[1] or {}
    blend_sets = [BlendSet.load_hdf5(path) for path in sets]
    calibrated, bias = calibrate_shear_response(network, *blend_sets)
    calibration = {"sets": [pathlib.Path(path).name for path in sets], "shear": list(blend_sets[0].config.shear),
                   "uncalibrated_m": bias["m"], "uncalibrated_m_err": bias["m_err"], "uncalibrated_c": bias["c"],
                   "uncalibrated_c_err": bias["c_err"], "galaxies": bias["n"]}
    metrics = {**entry.get("metrics", {}), "shear_response": list(calibrated.shear_response)}
    summary = ship(calibrated, name, weights_dir, {**entry.get("training_data", {}), "calibration": calibration},
                   metrics, kind="regressor", parent=entry.get("parent"), overwrite=overwrite)
    return calibrated, bias, summary
