"""The starter lab `hil init DIR` writes: the default emulated rack, on the assets hil came with.

Every prebuilt image (board kind × model) of a kind whose emulated twin is in the default rack
(hw/kinds: QemuTwin.in_starter_rack) becomes one emulated board, and each model gets every one
of its test sets, as in the repository's labs.yaml. The paths are absolute: the assets are
wherever hil is (hil.assets: a checkout, or the installed package), not beside the lab. The
results go beside the lab, as for any lab file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from hil import assets
from hil.errors import BadInput
from hil.firmware.build import MANIFEST, FirmwareManifest, load_manifest
from hil.hw.kinds import BOARD_KINDS

LAB_FILE = "labs.yaml"


@dataclass(frozen=True)
class StarterLab:
    path: Path
    images: tuple[FirmwareManifest, ...]  # one emulated board each

    @property
    def summary(self) -> str:
        kinds = sorted({image.board for image in self.images})
        models = sorted({image.model for image in self.images})
        return (f"wrote {self.path}: {len(self.images)} emulated boards ({', '.join(kinds)} × {', '.join(models)}) "
                f"on the models, test sets and images {_where()}")


def _where() -> str:
    return f"installed with hil in {assets.PACKAGED}" if assets.INSTALLED else f"of the checkout {assets.CHECKOUT}"


def prebuilt_images() -> tuple[FirmwareManifest, ...]:
    """Every prebuilt image of a kind in the starter rack, verified against its manifest, sorted by
    board kind and model."""
    images = tuple(manifest for path in sorted(assets.PREBUILT_DIR.glob(f"*/*/{MANIFEST}"))
                   if _in_starter_rack((manifest := load_manifest(path)).board))
    if not images:
        raise BadInput(f"{assets.PREBUILT_DIR}: no prebuilt firmware images of a kind in the starter rack; "
                       "build them with `hil firmware build`")
    return images


def _in_starter_rack(kind: str) -> bool:
    twin = BOARD_KINDS[kind].qemu if kind in BOARD_KINDS else None
    return twin is not None and twin.in_starter_rack


def _quoted(path: Path) -> str:
    return json.dumps(str(path))  # a JSON string is a YAML double-quoted scalar: any path stays one value


def starter_lab_text(images: tuple[FirmwareManifest, ...]) -> str:
    models = sorted({image.model for image in images})
    lines = [
        "# A starter lab written by `hil init`: an emulated rack, one board per prebuilt image (board",
        "# kind x model), every test set of each model. Every key is explained in docs/labs.md.",
        "# The models, test sets and images are the ones",
        f"# {_where()}.",
        "lab: emulated-rack",
        "results: results        # beside this file",
        "",
        "models:",
    ]
    for model in models:
        lines += [f"  {model}:",
                  f"    path: {_quoted(assets.MODELS_DIR / model)}",
                  f"    testsets: [{_quoted(assets.TESTSETS_DIR / model / '*.npz')}]"]
    lines += ["", "firmware:"]
    for kind in sorted({image.board for image in images}):
        lines.append(f"  {kind}:")
        lines += [f"    {image.model}: {_quoted(image.directory / MANIFEST)}" for image in images if image.board == kind]
    lines += ["", "boards:"]
    lines += [f"  - {{slot: {image.board}-{image.model}, kind: {image.board}, model: {image.model}, emulated: true}}"
              for image in images]
    lines += [
        "",
        "run:",
        "  threshold: 0.9          # early-exit confidence threshold; 1.0 always runs the full QUTE ensemble",
        "  request_timeout_s: 5    # one request's answer",
        "  boot_timeout_s: 20      # the first HELLO after bring-up",
        "  retries: 2              # per sample, each after a resync",
    ]
    return "\n".join(lines) + "\n"


def _exists(path: Path) -> BadInput:
    return BadInput(f"{path}: already exists; hil init never overwrites a lab: edit that one, or give another folder")


def write_starter_lab(folder: Path) -> StarterLab:
    """DIR/labs.yaml, made only where none is: a lab someone wrote is never overwritten (exit 3)."""
    path = Path(folder) / LAB_FILE
    if Path(folder).exists() and not Path(folder).is_dir():
        raise BadInput(f"{folder}: not a folder; give the folder to write {LAB_FILE} into")
    if path.exists() or path.is_symlink():
        raise _exists(path)
    images = prebuilt_images()
    text = starter_lab_text(images)
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
        with path.open("x", encoding="utf-8") as file:  # exclusive: a lab made meanwhile is not overwritten either
            file.write(text)
    except FileExistsError:
        raise _exists(path) from None
    except OSError as error:
        raise BadInput(f"{path}: cannot write the lab ({error.strerror}); give a folder you can write") from None
    return StarterLab(path, images)
