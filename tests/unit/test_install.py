"""hil outside a checkout, the fast part (docs/install.md): the wheel's package list is every package
of hil, and `hil init` writes the default lab on the assets and never overwrites one.
tests/emulated/test_wheel.py builds, installs and runs the wheel."""

import os
import subprocess
import sys
import tomllib

import setuptools

from hil import REPO_ROOT, assets
from hil.cli import main
from hil.lab.load import load_lab

PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]
PASS, BAD_INPUT = 0, 3


def test_the_wheel_takes_every_package_of_hil_and_the_asset_folders():
    packages = set(SETUPTOOLS["packages"])
    mapped = SETUPTOOLS["package-dir"]
    assert packages - set(mapped) == set(setuptools.find_packages(str(REPO_ROOT), include=["hil", "hil.*"])), \
        "pyproject.toml [tool.setuptools] packages must list every package under hil/"
    assert set(mapped) <= packages
    assert {REPO_ROOT / folder for folder in mapped.values()} == {assets.MODELS_DIR, assets.TESTSETS_DIR,
                                                                  assets.PREBUILT_DIR}
    assert not assets.INSTALLED and assets.CHECKOUT == REPO_ROOT


def test_init_writes_the_default_lab_on_the_assets_and_says_what_to_run(tmp_path, capsys):
    folder = tmp_path / "new" / "lab"
    assert main(["init", str(folder)]) == PASS
    out = capsys.readouterr().out
    assert f"next: hil run {folder / 'labs.yaml'}" in out
    starter, default = load_lab(folder / "labs.yaml"), load_lab(REPO_ROOT / "labs.yaml")

    def rack(lab):
        return (lab.name, sorted((b.kind, b.model, b.physical) for b in lab.boards), lab.run, lab.regression,
                {name: (m.card.directory.resolve(), sorted(t.path.resolve() for t in m.testsets))
                 for name, m in lab.models.items()},
                {key: manifest.directory.resolve() for key, manifest in lab.firmware.items()})

    assert rack(starter) == rack(default)
    assert starter.results_dir == folder / "results"


def test_init_never_overwrites_a_lab(tmp_path, capsys):
    lab = tmp_path / "labs.yaml"
    lab.write_text("lab: mine\n")
    assert main(["init", str(tmp_path)]) == BAD_INPUT
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and f"{lab}: already exists" in error
    assert lab.read_text() == "lab: mine\n"
    lab.unlink()
    lab.symlink_to(tmp_path / "elsewhere.yaml")  # a dangling link is a lab too: writing would follow it
    assert main(["init", str(tmp_path)]) == BAD_INPUT
    assert not (tmp_path / "elsewhere.yaml").exists()
    capsys.readouterr()
    (tmp_path / "notes.txt").write_text("")
    assert main(["init", str(tmp_path / "notes.txt")]) == BAD_INPUT
    assert f"{tmp_path / 'notes.txt'}: not a folder" in capsys.readouterr().err


def test_pytest_finds_the_plugin_and_loading_it_imports_no_heavy_library():
    """pytest loads the plugin into every session of a venv with hil (docs/pytest.md): by its pytest11 entry point,
    and without numpy, LiteRT, pyOCD or joblib, which it imports only for a session given --hil-lab."""
    assert PYPROJECT["project"]["entry-points"]["pytest11"] == {"hil": "hil.pytest_plugin"}
    done = subprocess.run([sys.executable, "-c", "import sys, hil.pytest_plugin; print(*sys.modules)"],
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    modules = set(done.stdout.split())
    assert {"hil.pytest_plugin", "pytest"} <= modules
    heavy = sorted(m for m in modules if m.split(".")[0] in ("numpy", "ai_edge_litert", "pyocd", "joblib", "serial"))
    assert not heavy, heavy
