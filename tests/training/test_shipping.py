"""Where trained models go: a new name in the user's model directory; shipped weights are never written over."""

import hashlib
import json

import pytest

from lenstronomy_vae.cli import main
from lenstronomy_vae.networks import model_files as models
from lenstronomy_vae.networks.galaxy_model import load_galaxy_model
from lenstronomy_vae.networks.manifest import add_to_manifest, export_model, new_model_file
from lenstronomy_vae.networks.model_files import ModelFileError, load_vae, read_manifest, resolve, sha256_of
from lenstronomy_vae.sims.galaxies import GalaxySimConfig, simulate_galaxies
from lenstronomy_vae.training.shipping import ship
from lenstronomy_vae.training.vae import train_and_ship

TINY_TRAINING = ["--held-out", "3", "--validation", "3", "--epochs", "1", "--batch-size", "3", "--latent-dim", "2",
                 "--encoder-filters", "4", "4", "4", "4", "--decoder-filters", "4", "4", "4", "4", "--dense-units", "8"]


@pytest.fixture(scope="module")
def galaxies_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "galaxies.h5"
    simulate_galaxies(12, GalaxySimConfig(source="parametric"), seed=3).save_hdf5(path)
    return str(path)


def directory_hashes(directory):
    """SHA-256 of every file under ``directory``, by relative path."""
    return {str(path.relative_to(directory)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(directory.rglob("*")) if path.is_file()}


@pytest.fixture
def private_shipped(tmp_path, monkeypatch, galaxy_model_path):
    """A shipped-weights directory with the tiny galaxy model as the default 'tiny'."""
    shipped = tmp_path / "shipped"
    vae = load_vae(galaxy_model_path)
    add_to_manifest(shipped, "tiny", export_model(vae, new_model_file(shipped, "tiny")), vae, {"n": 0},
                    {"median_ssim": 0.5}, default=True)
    monkeypatch.setattr(models, "weights_dir", lambda: shipped)
    return shipped


def test_train_by_default_writes_a_user_model_and_leaves_the_shipped_weights_alone(galaxies_file, user_home, tmp_path,
                                                                                  capsys):
    shipped = models.weights_dir()
    before = directory_hashes(shipped)
    assert main(["train", "--data", galaxies_file, "--name", "mine", "--checkpoint-dir", str(tmp_path / "run"),
                 *TINY_TRAINING]) == 0
    assert directory_hashes(shipped) == before
    manifest = read_manifest(user_home / "models")
    assert manifest["default"] is None and manifest["models"]["mine"]["latent_dim"] == 2
    assert resolve("mine")[0] == user_home / "models" / "mine.keras"
    assert load_galaxy_model("mine").latent_dim == 2
    capsys.readouterr()
    assert main(["models"]) == 0
    assert f"yours, in {user_home / 'models'}:\nmine (yours): vae, 64×64 px at 0.03″/px" in capsys.readouterr().out
    assert main(["models", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert listing["user_models_dir"] == str(user_home / "models") and "mine" in listing["user_models"]


def test_models_marks_user_models(private_shipped, user_home, galaxy_model_path, capsys):
    vae = load_vae(galaxy_model_path)
    ship(vae, "mine", None, {"n": 0}, {"median_ssim": 0.25}, kind="vae")
    ship(vae, "tiny", None, {"n": 0}, {"median_ssim": 0.75}, kind="vae", overwrite=True)
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert ":\ntiny (replaced by yours, 'tiny' below): vae, 16×16 px at 0.05″/px" in out
    assert f"yours, in {user_home / 'models'}:\nmine (yours): vae, 16×16 px at 0.05″/px, bands ['F814W'], " \
           "latent dim 4, median SSIM 0.250" in out
    assert "\ntiny (yours, default, replaces the shipped one): vae, 16×16 px" in out


def test_a_shipped_name_is_refused_before_any_training(user_home, capsys):
    before = directory_hashes(models.weights_dir())
    assert main(["train", "--data", "no_such_file.h5", "--name", "hst64"]) == 2
    error = capsys.readouterr().err
    assert "'hst64' is a shipped model: choose another name, or pass --overwrite" in error
    assert directory_hashes(models.weights_dir()) == before and not user_home.exists()
    with pytest.raises(ModelFileError, match="'hst64' is a shipped model"):
        train_and_ship("no_such_file.h5", "hst64", None, "run", epochs=1)


def test_train_needs_a_name(galaxies_file, capsys):
    with pytest.raises(SystemExit) as exit_code:
        main(["train", "--data", galaxies_file])
    assert exit_code.value.code == 2 and "the following arguments are required: --name" in capsys.readouterr().err


def test_overwrite_goes_to_the_user_directory_and_replaces_the_shipped_model_there(private_shipped, user_home,
                                                                                  multiband_model_path):
    before = directory_hashes(private_shipped)
    summary = ship(load_vae(multiband_model_path), "tiny", None, {"n": 0}, {"median_ssim": 0.5}, kind="vae",
                   overwrite=True)
    assert summary["model_file"] == str(user_home / "models" / "tiny.keras")
    assert directory_hashes(private_shipped) == before
    with pytest.warns(UserWarning, match="replaces the shipped 'tiny'"):
        assert load_galaxy_model("tiny").bands == ("g", "r", "i")


def test_an_explicit_overwrite_in_the_shipped_directory_writes_a_new_file_beside_the_old(private_shipped,
                                                                                        multiband_model_path):
    old_file = private_shipped / "tiny.keras"
    old_bytes = old_file.read_bytes()
    summary = ship(load_vae(multiband_model_path), "tiny", private_shipped, {"n": 0}, {"median_ssim": 0.5},
                   kind="vae", overwrite=True)
    assert summary["model_file"] == str(private_shipped / "tiny-2.keras")
    assert old_file.read_bytes() == old_bytes
    entry = read_manifest(private_shipped)["models"]["tiny"]
    assert entry["file"] == "tiny-2.keras" and entry["sha256"] == sha256_of(private_shipped / "tiny-2.keras")
    assert read_manifest(private_shipped)["default"] == "tiny"
    assert load_galaxy_model("tiny").bands == ("g", "r", "i")
    assert sorted(path.name for path in private_shipped.iterdir()) == ["manifest.json", "tiny-2.keras", "tiny.keras"]


def test_a_failed_export_leaves_no_file_and_no_entry(private_shipped, user_home, monkeypatch, galaxy_model_path):
    def disk_full(model, path):
        raise OSError("disk full")

    monkeypatch.setattr("lenstronomy_vae.training.shipping.export_model", disk_full)
    with pytest.raises(OSError, match="disk full"):
        ship(load_vae(galaxy_model_path), "mine", None, {"n": 0}, {}, kind="vae")
    assert list((user_home / "models").iterdir()) == []
