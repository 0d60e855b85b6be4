"""Child processes hil starts (QEMU, the emulated measurement unit, the pyOCD flasher):
their environment, their tie to us, and how they are stopped."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
from pathlib import Path


def die_with_parent() -> None:
    # Runs in the child between fork and exec: it gets SIGTERM when we die, however we die.
    # The signal follows the thread that started the child (see Rack._bring_up).
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    # Ctrl-C in a terminal signals the whole process group. The child is ours to stop: we shut every
    # board down in order, measuring what was answered first (and a Python child would print a
    # KeyboardInterrupt traceback). So it leaves our group: QEMU installs its own SIGINT handler and
    # would die with its last busy window still unsent. Ignoring SIGINT as well covers a signal sent
    # to it directly; an ignored signal stays ignored across exec.
    os.setpgid(0, 0)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def child_env() -> dict[str, str]:
    """This process's environment for a `python -m hil...` child: this very hil package first on
    PYTHONPATH, so the child runs the same code however we were started; the user's entries follow."""
    package_root = str(Path(__file__).resolve().parents[2])
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}


def reap(process: subprocess.Popen, timeout_s: float = 5.0) -> None:
    """Wait for a child that was told to exit; kill it if it has not within `timeout_s`."""
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
