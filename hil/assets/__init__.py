"""Where the run-time assets are: the models, test sets and prebuilt firmware images a run needs.

A checkout keeps them where they are made: fixtures/models (`hil model train`), fixtures/testsets
(`hil testsets generate`) and firmware/prebuilt (`hil firmware build`). A wheel has no checkout
around it, so pyproject.toml maps those three folders into it as package data of this package:
hil/assets/models, hil/assets/testsets and hil/assets/prebuilt (docs/install.md). Which of the two
layouts is in force is decided here, once, by whether the packaged copy is beside this file.
"""

from __future__ import annotations

from pathlib import Path

from hil import REPO_ROOT
from hil.errors import BadInput

PACKAGED = Path(__file__).resolve().parent
INSTALLED = (PACKAGED / "models").is_dir()  # a checkout's hil/assets holds this file only

# The repository hil runs from: its sources are what `hil firmware build` compiles, its git revision
# goes into provenance. None for an installed wheel, whose code is not any checkout's HEAD.
CHECKOUT: Path | None = None if INSTALLED else REPO_ROOT

MODELS_DIR = PACKAGED / "models" if INSTALLED else REPO_ROOT / "fixtures" / "models"
TESTSETS_DIR = PACKAGED / "testsets" if INSTALLED else REPO_ROOT / "fixtures" / "testsets"
PREBUILT_DIR = PACKAGED / "prebuilt" if INSTALLED else REPO_ROOT / "firmware" / "prebuilt"


def checkout(command: str, what: str, fix: str) -> Path:
    """The checkout `command` works in; an installed hil has none, and gets one line saying what to do."""
    if CHECKOUT is None:
        raise BadInput(f"{command}: an installed hil has no checkout {what}; {fix} (docs/install.md)")
    return CHECKOUT
