"""Firmware images and their manifests: what a lab flashes, and how it knows what it flashed.

`hil firmware build` generates the model C code, runs `make -C firmware`, and writes
each image with a manifest to firmware/prebuilt/<board>/<model>/. The manifest names
the board and model, the model's sha256, the image's sha256 (of firmware.bin, the bytes
the device hashes at boot and reports in INFO), the ELF's sha256, the hash of every
source that went in, the toolchain, and the image's flash and RAM use.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from hil import REPO_ROOT
from hil.firmware import codegen
from hil.errors import BadInput, HilError
from hil.model.card import load_model, sha256_file

FIRMWARE_DIR = REPO_ROOT / "firmware"
PREBUILT_DIR = FIRMWARE_DIR / "prebuilt"
BOARDS = ("mps2-an386", "mps2-an500")
MODELS = ("qute-digits", "qute-mnist1d")
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class FirmwareManifest:
    board: str
    model: str
    model_sha256: str
    image_sha256: str  # of firmware.bin
    elf_sha256: str
    source_sha256: str
    toolchain: str
    flash_bytes: int  # .text + .data
    ram_bytes: int  # .data + .bss; the stack takes the rest of the board's RAM
    arena_bytes: int
    directory: Path | None = None

    @property
    def elf(self) -> Path:
        return self.directory / "firmware.elf"

    @property
    def bin(self) -> Path:
        return self.directory / "firmware.bin"

    def to_dict(self) -> dict:
        """What manifest.json holds: every field but where it was read from."""
        data = asdict(self)
        del data["directory"]
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1) + "\n"


def source_files(board: str, model: str, root: Path = FIRMWARE_DIR) -> list[Path]:
    """Every file that goes into one image, in a fixed order."""
    files = sorted((root / "src").glob("*.[ch]")) + sorted((root / "boards" / "cmsdk").iterdir())
    files += sorted((root / "boards" / board).iterdir())
    files += sorted((root / "generated" / model).iterdir()) + [root / "Makefile"]
    return files


def source_sha256(board: str, model: str, root: Path = FIRMWARE_DIR) -> str:
    digest = hashlib.sha256()
    for path in source_files(board, model, root):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def toolchain_version() -> str:
    result = subprocess.run(["arm-none-eabi-gcc", "--version"], capture_output=True, text=True, check=True)
    return result.stdout.splitlines()[0]


def image_sizes(elf: Path) -> tuple[int, int]:
    """(flash, RAM) bytes from arm-none-eabi-size: text+data, data+bss."""
    result = subprocess.run(["arm-none-eabi-size", "-B", str(elf)], capture_output=True, text=True, check=True)
    text, data, bss = (int(v) for v in result.stdout.splitlines()[1].split()[:3])
    return text + data, data + bss


def generate(models=MODELS) -> list[Path]:
    return [path for model in models for path in codegen.write_sources(load_model(model))]


def build(out: Path | None = None, make_jobs: int = 2, source_dir: Path = FIRMWARE_DIR) -> list[FirmwareManifest]:
    """Build every image with make; copy each with its manifest to `out` (default prebuilt/).

    `source_dir` is a firmware tree (default this checkout's); tests build altered copies.
    """
    if shutil.which("arm-none-eabi-gcc") is None:
        raise HilError("arm-none-eabi-gcc not found: run setup.sh (it installs gcc-arm-none-eabi)")
    out = Path(out) if out else PREBUILT_DIR
    build_dir = out / "build"
    result = subprocess.run(["make", "-s", "-C", str(source_dir), f"-j{make_jobs}", f"BUILD={build_dir}"],
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise HilError(f"firmware build failed:\n{result.stderr.strip()}")
    toolchain = toolchain_version()
    manifests = []
    for board in BOARDS:
        for model in MODELS:
            card = load_model(model)
            target = out / board / model
            target.mkdir(parents=True, exist_ok=True)
            for name in ("firmware.elf", "firmware.bin"):
                shutil.copyfile(build_dir / board / model / name, target / name)
            flash, ram = image_sizes(target / "firmware.elf")
            manifest = FirmwareManifest(
                board=board, model=model, model_sha256=card.sha256,
                image_sha256=sha256_file(target / "firmware.bin"), elf_sha256=sha256_file(target / "firmware.elf"),
                source_sha256=source_sha256(board, model, source_dir), toolchain=toolchain, flash_bytes=flash, ram_bytes=ram,
                arena_bytes=codegen.arena_size(codegen.plan_model(card)), directory=target,
            )
            (target / MANIFEST).write_text(manifest.to_json())
            manifests.append(manifest)
    shutil.rmtree(build_dir)
    return manifests


def load_manifest(path: Path) -> FirmwareManifest:
    """A manifest and its image, verified: nothing is used that does not match its hash."""
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST
    if not path.is_file():
        raise BadInput(f"{path}: no such firmware manifest; build the firmware with `hil firmware build`")
    try:
        data = json.loads(path.read_text())
        manifest = FirmwareManifest(**data, directory=path.parent)
    except (json.JSONDecodeError, TypeError) as error:
        raise BadInput(f"{path}: not a valid firmware manifest ({error}); rebuild with `hil firmware build`") from None
    for file, expected in ((manifest.bin, manifest.image_sha256), (manifest.elf, manifest.elf_sha256)):
        if not file.is_file():
            raise BadInput(f"{file}: firmware image missing; rebuild with `hil firmware build`")
        if sha256_file(file) != expected:
            raise BadInput(f"{file}: sha256 does not match {path.name}; the image is corrupt or stale, "
                           "rebuild with `hil firmware build`")
    return manifest


def prebuilt(board: str, model: str) -> FirmwareManifest:
    return load_manifest(PREBUILT_DIR / board / model)
