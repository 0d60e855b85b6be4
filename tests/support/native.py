"""Build firmware C sources for the host, as a shared library that tests call through ctypes.

The firmware's portable parts (kernels, decisions, protocol) are plain C11 without a HAL, so
the very same files run on the host with the same -Wall -Wextra -Werror flags.
"""

from __future__ import annotations

import ctypes
import hashlib
import subprocess
from pathlib import Path

from hil import REPO_ROOT

FIRMWARE_SRC = REPO_ROOT / "firmware" / "src"
HOST_FLAGS = ["-std=c11", "-Wall", "-Wextra", "-Werror", "-O2", "-fPIC", "-shared"]


def build_shared_library(sources: list[Path], directory: Path, extra_flags: list[str] = ()) -> ctypes.CDLL:
    """Compile `sources` with the host gcc into `directory` and load the result."""
    sources = [Path(s) for s in sources]
    digest = hashlib.sha256(b"".join(s.read_bytes() for s in sources) + " ".join(extra_flags).encode()).hexdigest()
    library = Path(directory) / f"libhost-{digest[:16]}.so"
    if not library.exists():
        command = ["gcc", *HOST_FLAGS, *extra_flags, f"-I{FIRMWARE_SRC}", "-o", str(library), *map(str, sources)]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"host build failed: {' '.join(command)}\n{result.stderr}")
    return ctypes.CDLL(str(library))
