"""`hil --help` answers at once: the command line imports what a command needs inside that command, so
asking for help loads none of the numerical or storage libraries (read from `python -X importtime`, which
names every module a real `hil` process imports)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

import hil

ROOT = Path(hil.__file__).parent.parent
HEAVY = ("numpy", "scipy", "pyarrow", "pandas", "rich", "tensorflow", "joblib", "pyocd")


def imported_modules(*arguments: str) -> set[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "hil.cli", *arguments], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [line for line in done.stderr.splitlines() if line.startswith("import time:") and "|" in line]
    return {line.rsplit("|", 1)[1].strip() for line in lines}


@pytest.mark.parametrize("arguments", [("--help",), ("run", "--help"), ("testsets", "generate", "--help")])
def test_help_imports_no_heavy_library(arguments):
    modules = imported_modules(*arguments)
    assert "hil.cli" in modules or "argparse" in modules  # the listing is real: it names what was imported
    heavy = sorted(m for m in modules if m.split(".")[0] in HEAVY)
    assert not heavy, f"hil {' '.join(arguments)} imports {heavy[:8]}"
