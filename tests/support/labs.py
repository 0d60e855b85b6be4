"""Small labs of the committed models and prebuilt images, and `hil` as a user runs it (a subprocess)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

from hil import REPO_ROOT
from hil.firmware import build as firmware
from hil.model.reference import DEFAULT_REFERENCE, Reference
from hil.model.testsets import write_npz

PASS, REGRESSION, INFRASTRUCTURE, BAD_INPUT = 0, 1, 2, 3
USAGE = 64  # a wrong command line (README, Exit codes)
BOARDS = {  # slot: (kind, model)
    "an386-digits": ("mps2-an386", "qute-digits"),
    "an500-mnist1d": ("mps2-an500", "qute-mnist1d"),
}


def hil(*args, cwd=None, env=None, timeout=600):
    return subprocess.run([sys.executable, "-m", "hil.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout, env={**os.environ, "NO_COLOR": "1", **(env or {})})


def small_testsets(tmp_path: Path, model: str, samples: int) -> list[str]:
    """The first `samples` of every committed test set, written as test sets of their own."""
    paths = []
    for name in ("clean", "shift-s2", "ood"):
        source = REPO_ROOT / "fixtures" / "testsets" / model / f"{name}.npz"
        with np.load(source) as data:
            arrays = {key: data[key][:samples] if data[key].ndim and key in ("inputs", "labels", "corruption")
                      else data[key] for key in data.files}
        path = tmp_path / "testsets" / model / f"{name}.npz"
        write_npz(path, arrays)
        paths.append(str(path))
    return paths


def write_lab(tmp_path: Path, boards=BOARDS, samples: int = 12, manifests: dict | None = None, **run) -> Path:
    models = sorted({model for _kind, model in boards.values()})
    lab = {
        "lab": f"test-{tmp_path.name}",
        "results": str(tmp_path / "results"),
        "models": {m: {"path": str(REPO_ROOT / "fixtures" / "models" / m),
                       "testsets": small_testsets(tmp_path, m, samples)} for m in models},
        "firmware": {},
        "boards": [{"slot": slot, "kind": kind, "model": model, "emulated": True}
                   for slot, (kind, model) in boards.items()],
        "run": {"threshold": 0.9, "request_timeout_s": 5, "retries": 1, **run},
    }
    rounding = Reference(run.get("reference", DEFAULT_REFERENCE))  # by default the images that match the reference
    for kind, model in boards.values():
        default = firmware.PREBUILT_DIR / firmware.image_dir(kind, model, rounding) / firmware.MANIFEST
        manifest = (manifests or {}).get((kind, model), default)
        lab["firmware"].setdefault(kind, {})[model] = str(manifest)
    path = tmp_path / "labs.yaml"
    path.write_text(yaml.safe_dump(lab, sort_keys=False))
    return path


def run_dir_of(tmp_path: Path) -> Path:
    (run_dir,) = [p for p in (tmp_path / "results").iterdir() if p.is_dir()]
    return run_dir


def running(lab: Path) -> tuple[subprocess.Popen, Path]:
    """`hil run lab --json` in the background, once its first record is journaled: the process and its run folder."""
    from hil.run.records import read_records

    owner = subprocess.Popen([sys.executable, "-m", "hil.cli", "run", str(lab), "--json"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env={**os.environ, "NO_COLOR": "1"})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        run_dirs = [p for p in (lab.parent / "results").glob("*") if p.is_dir()]
        if run_dirs and read_records(run_dirs[0]):
            return owner, run_dirs[0]
        time.sleep(0.05)
    owner.kill()
    raise AssertionError(f"{lab}: no record within 120 s")


def unit_pid(owner: int, slot: str = "an386-digits") -> int:
    """The emulated measurement unit of `slot` that the hil process `owner` started."""
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                command = (proc / "cmdline").read_bytes()
                ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError):
                continue
            if b"hil.hw.emulated.monitor_unit" in command and slot.encode() in command and ppid == owner:
                return int(proc.name)
    raise AssertionError("no emulated unit found")
