"""Results disks that fail for real (size-limited or read-only tmpfs mounts: the tests run as root), and
a journal read back line by line."""

import json
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def tmpfs(path: Path, size: str = "512k", read_only: bool = False):
    """A real file system of `size` at `path`, unmounted afterwards."""
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True,
                             text=True)
    if mounted.returncode != 0:
        pytest.skip(f"mounting a tmpfs was refused ({mounted.stderr.strip()}); these tests need root")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


def remount(path: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(path)], check=True)


def journal_lines(run_dir: Path, name: str = "records.jsonl") -> list[dict]:
    data = (run_dir / name).read_bytes()
    assert not data or data.endswith(b"\n"), "the journal ends in a torn line"
    return [json.loads(line) for line in data.splitlines()]
