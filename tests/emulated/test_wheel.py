"""hil outside a checkout (docs/install.md): the wheel holds the package and the run-time assets, and
an installed hil, in a fresh environment, runs a lab from an empty folder with the checkout's records."""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from dataclasses import asdict
from pathlib import Path

import pytest
import yaml

from hil import REPO_ROOT, __version__, assets
from hil.run.records import read_records

BAD_INPUT = 3
# The short lab of the end-to-end test: two boards of the starter lab, one installed test set each.
SHORT = {"nucleo-l432kc-qute-digits": "shift-s2", "mps2-an500-qute-mnist1d": "ood"}


def _ran(result: subprocess.CompletedProcess, code: int = 0) -> subprocess.CompletedProcess:
    assert result.returncode == code, f"exit {result.returncode}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built from a copy of the working tree (no build/ or egg-info lands in the checkout, and
    nothing stale of an earlier build gets in) with this environment's setuptools: nothing is downloaded."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    shutil.copytree(REPO_ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "results", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".hypothesis"))
    _ran(subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                         "--disable-pip-version-check", "-w", str(work / "dist"), str(source)],
                        capture_output=True, text=True, timeout=300))
    (path,) = (work / "dist").glob("hil-*.whl")
    return path


@pytest.mark.slow
def test_the_wheel_holds_the_code_and_the_assets_a_run_needs(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    code = {p.relative_to(REPO_ROOT).as_posix() for p in (REPO_ROOT / "hil").rglob("*.py")}
    assert code <= names
    for folder, packaged, pattern in ((assets.MODELS_DIR, "models", "*/*"), (assets.TESTSETS_DIR, "testsets", "*/*"),
                                      (assets.PREBUILT_DIR, "prebuilt", "*/*/**/*")):
        files = {f"hil/assets/{packaged}/{p.relative_to(folder).as_posix()}" for p in folder.glob(pattern)
                 if p.is_file()}
        assert files and files <= names, sorted(files - names)
    assert not [n for n in names if n.split("/")[0] in ("tests", "firmware", "fixtures", "docs")]
    assert f"hil-{__version__}.dist-info/METADATA" in names


def fresh_environment(work: Path, wheel: Path) -> Path:
    """A new venv with the wheel installed, offline; its dependencies are this environment's."""
    venv = work / "venv"
    _ran(subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], capture_output=True, text=True))
    python = venv / "bin" / "python"
    _ran(subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-index", "--no-deps",
                         "--disable-pip-version-check", "-q", str(wheel)], capture_output=True, text=True, timeout=300))
    site = _ran(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True)).stdout.strip()
    # Plain path lines: Python adds these folders but runs none of their .pth files, so this environment's
    # editable install of hil (its __editable__ finder) does not come along; the wheel's hil is found first.
    ours = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    (Path(site) / "hil-test-dependencies.pth").write_text("\n".join(ours) + "\n")
    return venv


def shorten(lab: Path) -> None:
    """The starter lab cut to the boards and test sets of SHORT (every other key as `hil init` wrote it)."""
    data = yaml.safe_load(lab.read_text())
    data["boards"] = [board for board in data["boards"] if board["slot"] in SHORT]
    kept = {board["model"]: SHORT[board["slot"]] for board in data["boards"]}
    data["models"] = {name: {**model, "testsets": [str(Path(model["testsets"][0]).parent / f"{kept[name]}.npz")]}
                      for name, model in data["models"].items() if name in kept}
    for kind, images in data["firmware"].items():
        data["firmware"][kind] = {model: path for model, path in images.items()
                                  if any(b["kind"] == kind and b["model"] == model for b in data["boards"])}
    data["firmware"] = {kind: images for kind, images in data["firmware"].items() if images}
    lab.write_text(yaml.safe_dump(data, sort_keys=False))


def outputs(run_dir: Path) -> list[dict]:
    """Every record but its attempt count (a retry under load is no difference in what the board said)."""
    records = [asdict(record) for record in read_records(run_dir)]
    for record in records:
        del record["attempts"]
    return sorted(records, key=lambda r: (r["slot"], r["testset"], r["index"]))


def run_lab(hil: list[str], folder: Path, env: dict) -> tuple[Path, dict, dict]:
    """`hil init .` and `hil run labs.yaml` (short) in `folder`: the run directory, the --json summary
    and run.json."""
    folder.mkdir()
    init = _ran(subprocess.run([*hil, "init", "."], cwd=folder, env=env, capture_output=True, text=True, timeout=60))
    assert "next: hil run labs.yaml" in init.stdout
    shorten(folder / "labs.yaml")
    result = _ran(subprocess.run([*hil, "run", "labs.yaml", "--json"], cwd=folder, env=env, capture_output=True,
                                 text=True, timeout=600))
    summary = json.loads(result.stdout)
    run_dir = folder / summary["run_dir"]  # relative to the lab's folder, as the lab says `results: results`
    return run_dir, summary, json.loads((run_dir / "run.json").read_text())


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("qemu-system-arm") is None, reason="qemu-system-arm not installed")
def test_an_installed_hil_runs_a_lab_from_an_empty_folder_as_the_checkout_does(wheel, tmp_path):
    venv = fresh_environment(tmp_path, wheel)
    outside = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")} | {"NO_COLOR": "1"}
    run_dir, summary, run = run_lab([str(venv / "bin" / "hil")], tmp_path / "empty", outside)
    installed = Path(run["models"]["qute-digits"]["path"])
    assert installed.is_relative_to(venv) and "hil/assets/models" in installed.as_posix()
    assert run["git"] == {"revision": "unknown", "dirty": None} and run["software"]["hil"] == __version__
    assert all(s["exact"] == s["samples"] == s["expected"] for s in summary["summaries"])

    reference_dir, _, reference = run_lab([sys.executable, "-m", "hil.cli"], tmp_path / "checkout",
                                           {**os.environ, "NO_COLOR": "1"})
    assert Path(reference["models"]["qute-digits"]["path"]) == assets.MODELS_DIR / "qute-digits"
    assert len(reference["git"]["revision"]) == 40  # a checkout's provenance keeps its revision

    def hashes(run: dict) -> dict:
        return {"models": {name: m["sha256"] for name, m in run["models"].items()},
                "testsets": {model: {name: t["sha256"] for name, t in sets.items()}
                             for model, sets in run["testsets"].items()}}

    assert hashes(run) == hashes(reference)  # the same bytes, from two places
    records = outputs(run_dir)
    assert len(records) == 360 + 600 and records == outputs(reference_dir)

    for command, code in ((["firmware", "build"], BAD_INPUT), (["model", "train", "qute-digits"], BAD_INPUT)):
        result = _ran(subprocess.run([str(venv / "bin" / "hil"), *command], cwd=tmp_path / "empty", env=outside,
                                     capture_output=True, text=True, timeout=60), code)
        assert result.stderr.count("\n") == 1 and "an installed hil has no checkout" in result.stderr
