"""Model files: manifest, integrity checks, safe loading, user models, the shipped weights."""

import json
import pathlib

import keras
import numpy as np
import pytest

from lenstronomy_vae.networks import model_files as models
from lenstronomy_vae.networks.galaxy_model import load_galaxy_model
from lenstronomy_vae.networks.manifest import add_to_manifest, check_new_model, export_model, new_model_file
from lenstronomy_vae.networks.model_files import (
    ModelFileError,
    default_model_name,
    load_vae,
    read_manifest,
    resolve,
    sha256_of,
    user_models_dir,
)
from lenstronomy_vae.networks.vae import GalaxyVAE

SHIPPED = models.weights_dir()


def write_model(directory, name, path, default=False):
    """Record the .keras file ``path`` as model ``name`` in ``directory`` (a new file, as training does)."""
    vae = load_vae(path)
    model_file = export_model(vae, new_model_file(directory, name))
    add_to_manifest(directory, name, model_file, vae, training_data={"n": 0}, metrics={"median_ssim": 0.5},
                    default=default)
    return model_file


@pytest.fixture
def private_weights(tmp_path, monkeypatch, galaxy_model_path):
    """A shipped-weights directory holding the tiny galaxy model as the default 'tiny' with its manifest."""
    shipped = tmp_path / "shipped"
    write_model(shipped, "tiny", galaxy_model_path, default=True)
    monkeypatch.setattr(models, "weights_dir", lambda: shipped)
    return shipped


def test_manifest_records_what_a_user_needs(private_weights):
    entry = read_manifest(private_weights)["models"]["tiny"]
    assert read_manifest(private_weights)["default"] == "tiny"
    assert entry["sha256"] == sha256_of(private_weights / "tiny.keras")
    assert entry["latent_dim"] == 4 and entry["image_size"] == 16 and entry["bands"] == ["F814W"]
    assert entry["pixel_scale"] == 0.05 and entry["normalization"]["beta"] == 2.5
    assert load_galaxy_model("tiny").latent_dim == 4
    assert load_galaxy_model().name == "tiny"


def test_model_whose_hash_differs_from_the_manifest_is_refused(private_weights):
    with open(private_weights / "tiny.keras", "ab") as f:
        f.write(b"tampered")
    with pytest.raises(ModelFileError, match="does not match its manifest: SHA-256"):
        load_vae("tiny")


def test_missing_shipped_file_is_named(private_weights):
    (private_weights / "tiny.keras").unlink()
    with pytest.raises(ModelFileError, match="tiny.keras' does not exist"):
        load_vae("tiny")


def test_user_models_load_by_name_after_the_shipped_ones(private_weights, user_home, multiband_model_path):
    assert user_models_dir() == user_home / "models"
    write_model(user_models_dir(), "mine", multiband_model_path)
    path, entry = resolve("mine")
    assert path == user_home / "models" / "mine.keras" and entry["bands"] == ["g", "r", "i"]
    assert load_galaxy_model("mine").bands == ("g", "r", "i")
    assert resolve("tiny")[0].parent == private_weights
    assert default_model_name() == "tiny"  # a user model is not the default unless made so
    with pytest.raises(ModelFileError, match=r"unknown model 'other': shipped models are \['tiny'\], yours .*'mine'"):
        resolve("other")


def test_a_user_model_with_a_shipped_name_says_that_it_replaces_it(private_weights, multiband_model_path):
    with pytest.raises(ModelFileError, match="'tiny' is a shipped model: choose another name, or pass --overwrite"):
        check_new_model(None, "tiny")
    assert check_new_model(None, "tiny", overwrite=True) == user_models_dir()
    write_model(user_models_dir(), "tiny", multiband_model_path)
    with pytest.warns(UserWarning, match="'tiny' is your model in .* which replaces the shipped 'tiny'"):
        assert resolve("tiny")[0].parent == user_models_dir()


def test_a_user_default_replaces_the_shipped_default(private_weights, galaxy_model_path):
    write_model(user_models_dir(), "mine", galaxy_model_path, default=True)
    assert default_model_name() == "mine"
    assert load_galaxy_model().name == "mine"


def test_new_names_and_files_never_replace_anything(tmp_path, galaxy_model_path):
    directory = tmp_path / "models"
    first = write_model(directory, "mine", galaxy_model_path)
    with pytest.raises(ModelFileError, match="model 'mine' already exists in .*: choose another name, or pass "
                                             "--overwrite"):
        check_new_model(directory, "mine")
    before = first.read_bytes()
    second = write_model(directory, "mine", galaxy_model_path)
    assert (first.name, second.name) == ("mine.keras", "mine-2.keras") and first.read_bytes() == before
    assert read_manifest(directory)["models"]["mine"]["file"] == "mine-2.keras"
    for name in ("a/b", "x.keras", "", "-x"):
        with pytest.raises(ModelFileError, match="must start with a letter or digit"):
            check_new_model(directory, name)
    with pytest.raises(ModelFileError, match="is a file, not a directory"):
        check_new_model(first, "other")


def test_a_broken_manifest_is_named(user_home):
    (user_home / "models").mkdir(parents=True)
    (user_home / "models" / "manifest.json").write_text("{not json")
    with pytest.raises(ModelFileError, match="manifest.json' is not valid JSON .* repair or remove it"):
        resolve("anything")
    (user_home / "models" / "manifest.json").write_text("[]")
    with pytest.raises(ModelFileError, match="has no 'models' mapping"):
        read_manifest(user_home / "models")


def test_file_with_a_lambda_layer_is_refused(tmp_path):
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Lambda(lambda x: x * 2)(inputs))
    path = tmp_path / "lambda.keras"
    model.save(path)
    with pytest.raises(ModelFileError, match="could not load model file .* safely"):
        load_vae(path)


def test_keras_file_of_another_model_is_refused(tmp_path):
    inputs = keras.Input((4,))
    path = tmp_path / "dense.keras"
    keras.Model(inputs, keras.layers.Dense(2)(inputs)).save(path)
    with pytest.raises(ModelFileError, match="holds a Functional, not a lenstronomy_vae GalaxyVAE"):
        load_vae(path)


def test_loaded_models_are_cached_per_file(galaxy_model_path):
    assert load_galaxy_model(galaxy_model_path) is load_galaxy_model(galaxy_model_path)


def test_decode_checks_latent_size_and_values(galaxy_model_path):
    model = load_galaxy_model(galaxy_model_path)
    assert model.decode(np.zeros(4)).shape == (1, 16, 16, 1)
    with pytest.raises(ValueError, match="4-dimensional latent space; got latent array of shape \\(1, 5\\)"):
        model.decode(np.zeros(5))
    with pytest.raises(ValueError, match="latent values must be finite"):
        model.decode(np.array([0.0, np.nan, 0.0, 0.0]))


@pytest.mark.slow
@pytest.mark.skipif(not (SHIPPED / "manifest.json").is_file(), reason="no shipped weights")
def test_shipped_models_match_their_manifest_and_decode_galaxies():
    manifest = json.loads((SHIPPED / "manifest.json").read_text())
    assert manifest["default"] in manifest["models"]
    for name, entry in manifest["models"].items():
        path = pathlib.Path(SHIPPED) / entry["file"]
        assert sha256_of(path) == entry["sha256"]
        assert path.stat().st_size < 10_000_000
        if entry["kind"] == "regressor":
            from lenstronomy_vae.networks.model_files import load_network
            from lenstronomy_vae.networks.regressor import LatentRegressor

            regressor = load_network(name, LatentRegressor)
            size = entry["image_size"]
            predicted = regressor.predict_quantities(np.zeros((1, size, size, len(entry["bands"]))))
            assert set(predicted) == {"g1", "g2", "redshift"} and entry["parent"] in manifest["models"]
            assert entry["metrics"]["sigma_de1"] < 0.3
            continue
        model = load_galaxy_model(name)
        assert isinstance(model.vae, GalaxyVAE)
        assert (model.latent_dim, model.image_size, list(model.bands)) == (
            entry["latent_dim"], entry["image_size"], entry["bands"])
        np.testing.assert_allclose(model.vae.normalization.band_max, entry["normalization"]["band_max"])
        stamp = model.decode(np.zeros(model.latent_dim))[0, ..., 0]
        peak = np.unravel_index(np.argmax(stamp), stamp.shape)
        assert np.all(np.abs(np.array(peak) - (model.image_size - 1) / 2) < 4)  # the mean galaxy is centred
        assert entry["metrics"]["median_ssim"] > 0.5
        assert entry.get("parent", name) in manifest["models"]
