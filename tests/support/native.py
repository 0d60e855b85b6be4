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
        compile_c(["gcc", *HOST_FLAGS, *extra_flags, f"-I{FIRMWARE_SRC}", "-o", str(library), *map(str, sources)])
    return ctypes.CDLL(str(library))


def compile_c(command: list[str]) -> None:
    """Runs a compiler or linker command; its errors, with the command, if it fails."""
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"build failed: {' '.join(command)}\n{result.stderr}")


# The C function each kernel of the models is, by its TFLite op name (hil/firmware/codegen.py emits the calls).
KERNEL_FUNCTIONS = {"CONV_2D": "k_conv2d", "DEPTHWISE_CONV_2D": "k_depthwise_conv2d",
                    "FULLY_CONNECTED": "k_fully_connected", "AVERAGE_POOL_2D": "k_avg_pool2d", "RESHAPE": "k_copy"}
REPLY_SIZE = 256  # PROTO_MAX_PAYLOAD: a CONFORMANCE reply's most


def conformance_runner(lib: ctypes.CDLL):
    """conformance_run() of a host build of conformance.c: payload -> (its error code, the reply payload)."""
    lib.conformance_run.restype = ctypes.c_int
    lib.conformance_run.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_uint8),
                                    ctypes.POINTER(ctypes.c_size_t)]

    def run(payload: bytes) -> tuple[int, bytes]:
        out, n = (ctypes.c_uint8 * REPLY_SIZE)(), ctypes.c_size_t()
        code = lib.conformance_run(payload, len(payload), out, ctypes.byref(n))
        return code, bytes(out[:n.value]) if code == 0 else b""
    return run
