"""Every command answers bad input with exit code 2 and one line on stderr naming the problem; bugs stay exit 1."""

import pytest

from lenstronomy_vae.cli import commands, main
from lenstronomy_vae.sims import catalog


@pytest.fixture
def files(tmp_path, tiny_model_path):
    """Paths of a text file posing as data, a missing file, a VAE and a model directory that is a file."""
    (tmp_path / "text.h5").write_text("not HDF5")
    (tmp_path / "a_file").write_text("")
    return {"TEXT": str(tmp_path / "text.h5"), "MISSING": str(tmp_path / "missing.h5"), "VAE": tiny_model_path,
            "FILE": str(tmp_path / "a_file"), "OUT": str(tmp_path / "out"), "DIR": str(tmp_path)}


BAD_INPUTS = [
    (["demo", "--model", "no_such_model", "--out", "OUT"], "unknown model 'no_such_model'"),
    (["fit", "MISSING", "--psf", "MISSING", "--noise", "1"], "no such FITS file"),
    (["simulate", "--n", "2", "--survey", "lsst", "--out", "OUT"], "survey 'lsst' has bands"),
    (["simulate", "--n", "2", "--source", "cosmos", "--out", "OUT"], "source='cosmos' needs the COSMOS parametric"),
    (["simulate", "--n", "0", "--out", "OUT"], "n must be a positive integer, got 0"),
    (["simulate", "--n", "2", "--out", "DIR"], "is a directory; give the HDF5 file to write"),
    (["simulate-blends", "--n", "2", "--survey", "jwst", "--out", "OUT"], "unknown survey 'jwst'"),
    (["simulate-blends", "--n", "2", "--objects", "3", "1", "--out", "OUT"], "n_objects_range must be (min, max)"),
    (["train", "--data", "MISSING", "--name", "hst64"], "'hst64' is a shipped model"),
    (["train", "--data", "MISSING", "--name", "mine"], "no such HDF5 file"),
    (["train", "--data", "TEXT", "--name", "mine"], "is not an HDF5 file"),
    (["train", "--data", "TEXT", "--name", "mine", "--epochs", "0"], "epochs must be a positive integer, got 0"),
    (["train", "--data", "TEXT", "--name", "mine", "--weights-dir", "FILE"], "is a file, not a directory"),
    (["train", "--data", "TEXT", "--name", "../mine"], "model name '../mine' must start with a letter or digit"),
    (["train-deblender", "--data", "TEXT", "--name", "mine", "--batch-size", "0"], "batch_size must be a positive"),
    (["train-deblender", "--data", "TEXT", "--name", "lsst45_deblender"], "'lsst45_deblender' is a shipped model"),
    (["train-regressor", "--data", "TEXT", "--name", "mine", "--learning-rate", "-1"], "learning_rate must be a "
                                                                                         "positive number"),
    (["train-regressor", "--data", "TEXT", "--name", "mine", "--checkpoint-dir", "FILE"], "checkpoint directory"),
    (["calibrate-regressor", "--regressor", "VAE", "--sets", "TEXT", "TEXT", "TEXT", "TEXT"],
     "holds a GalaxyVAE, not a lenstronomy_vae LatentRegressor"),
    (["calibrate-regressor", "--sets", "TEXT", "TEXT", "TEXT", "TEXT", "--name", "lsst45_regressor"],
     "'lsst45_regressor' is a shipped model"),
    (["report", "--data", "MISSING", "--out", "OUT"], "no such HDF5 file"),
    (["report", "--data", "TEXT", "--map-steps", "0", "--out", "OUT"], "--map-steps must be a positive integer"),
    (["deblend", "MISSING", "--out", "OUT"], "no such FITS file"),
]


@pytest.mark.parametrize("arguments, message", BAD_INPUTS, ids=[" ".join(a[:1] + a[-3:]) for a, _ in BAD_INPUTS])
def test_bad_input_exits_2_with_one_line_naming_the_problem(arguments, message, files, monkeypatch, capsys):
    monkeypatch.setattr(catalog, "cosmos_catalog_dir", lambda: None)  # as without fpfs
    code = main([files.get(argument, argument) for argument in arguments])
    error = capsys.readouterr().err
    assert code == 2, error
    assert message in error and error.count("\n") == 1 and "Traceback" not in error
    assert error.startswith(f"lenstronomy-vae {arguments[0]}: error: ")


def test_a_broken_user_manifest_is_bad_input_for_models(user_home, capsys):
    (user_home / "models").mkdir(parents=True)
    (user_home / "models" / "manifest.json").write_text("{broken")
    assert main(["models"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("lenstronomy-vae models: error: model manifest ") and "is not valid JSON" in error
    assert error.count("\n") == 1


def test_argparse_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_code:
        main(["simulate", "--n", "two", "--out", "x.h5"])
    assert exit_code.value.code == 2 and "argument --n: invalid int value: 'two'" in capsys.readouterr().err


def test_an_internal_error_is_not_reported_as_bad_input(monkeypatch):
    """A bug raises out of main (a traceback and exit code 1 for the program), rather than exit code 2."""
    def broken(args):
        raise KeyError("a bug")

    monkeypatch.setattr(commands, "models_command", broken)
    with pytest.raises(KeyError, match="a bug"):
        main(["models"])
