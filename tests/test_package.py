"""The package's shape: imports run one way, none hide in functions, and only lensing needs a matching lenstronomy."""

import ast
import configparser
import pathlib
import subprocess
import sys

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "lenstronomy_vae"
REPO = PACKAGE.parent


def test_the_layers_contract_holds():
    """`lint-imports` (import-linter) with the layers contract of pyproject.toml."""
    command = "from importlinter.cli import lint_imports_command; lint_imports_command()"  # the `lint-imports` script
    result = subprocess.run([sys.executable, "-c", command], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


def _imported_modules(node):
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        return [node.module or ""]
    return []


def test_no_package_module_is_imported_inside_a_function():
    """An import of the package's own modules inside a function hides a cycle: there are none.

    (The one third-party import inside a function is TensorFlow's, made quietly on purpose:
    ``utils.tensorflow_logs.import_tensorflow_quietly``.)
    """
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                found += [f"{path.relative_to(REPO)}:{inner.lineno} {name}" for inner in ast.walk(node)
                          for name in _imported_modules(inner)
                          if name.startswith("lenstronomy_vae") or path.name != "tensorflow_logs.py"]
    assert found == []


@pytest.mark.slow
def test_an_unsupported_lenstronomy_leaves_simulation_deblending_and_their_commands_working():
    script = """
import warnings
import lenstronomy
lenstronomy.__version__ = "1.99.0"
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import lenstronomy_vae
assert any("'VAE' light profile and the 'LM' step are not registered" in str(w.message) for w in caught), caught
import numpy as np
from lenstronomy_vae.deblending import detect
from lenstronomy_vae.sims import BlendSimConfig, LSST, simulate_blends
import lenstronomy_vae.evaluation
import lenstronomy_vae.training
scenes = simulate_blends(1, BlendSimConfig(n_objects_range=(1, 1)), seed=0)
assert len(detect(scenes.blend[0], np.sqrt(LSST.sky_levels), threshold=1.5)) >= 1
for attempt in ("import lenstronomy_vae.lensing", "from lenstronomy_vae import VAEProfile"):
    try:
        exec(attempt)
    except ImportError as error:
        assert "supports lenstronomy >=1.14,<1.15; lenstronomy 1.99.0 is installed" in str(error), error
    else:
        raise AssertionError(attempt + " did not fail")
from lenstronomy_vae.cli import main
assert main(["models"]) == 0
assert main(["demo", "--quick"]) == 1
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stdout + result.stderr


def test_setup_cfg_installs_every_subpackage():
    """A plain `pip install .` installs the packages setup.cfg lists, and only those."""
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    listed = set(config["options"]["packages"].split())
    found = {".".join(path.parent.relative_to(REPO).parts) for path in PACKAGE.rglob("__init__.py")}
    assert found | {"lenstronomy_vae.weights"} == listed
