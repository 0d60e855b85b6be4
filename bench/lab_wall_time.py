"""Wall time and host CPU of the default lab, one revision against another, measured side by side.

    python bench/lab_wall_time.py [--before REV] [--rounds 2]

The revision `--before` (default: the commit before issue 12's measurement work, see docs/measurement.md)
is checked out into a temporary git worktree; then `hil run labs.yaml` runs there and in this checkout in
turn, `--rounds` times each, alternating so that the machine's load falls on both alike. Each run is a
subprocess of this venv's Python with PYTHONPATH set to its tree; its wall time is measured here and its
CPU (user + system of the run and its children: the orchestrator, QEMU, the units, pyOCD) from
resource.getrusage. Both must PASS. Not a test: the figures depend on the machine; the ratios are what
docs/measurement.md records.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
BEFORE = "a670b93"  # issue 11 landed; monitor protocol v1, per-line fsync, per-sample decode


def run_lab(tree: Path, locks: Path) -> tuple[float, float]:
    """(wall s, CPU s of the run and everything it started) of one `hil run labs.yaml` in `tree` (its runs go
    to the tree's results/, as a user's would)."""
    env = {**os.environ, "PYTHONPATH": str(tree), "NO_COLOR": "1", "HIL_LOCK_DIR": str(locks)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "hil.cli", "run", "labs.yaml"], cwd=tree, env=env,
                            capture_output=True, text=True)
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        sys.exit(f"{tree}: hil run exited {result.returncode}:\n{result.stdout[-1500:]}{result.stderr[-1500:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", default=BEFORE, help=f"the revision to compare with (default {BEFORE})")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hil-bench-") as scratch:
        old = Path(scratch) / "before"
        subprocess.run(["git", "-C", str(HERE), "worktree", "add", "--detach", str(old), args.before],
                       check=True, capture_output=True)
        try:
            figures: dict[str, list[tuple[float, float]]] = {"before": [], "after": []}
            for round_ in range(args.rounds):
                for name, tree in (("before", old), ("after", HERE)):
                    figures[name].append(run_lab(tree, Path(scratch) / "locks"))
                    wall, cpu = figures[name][-1]
                    print(f"round {round_ + 1}: {name:6} wall {wall:6.1f} s, CPU {cpu:6.1f} s", flush=True)
        finally:
            subprocess.run(["git", "-C", str(HERE), "worktree", "remove", "--force", str(old)], capture_output=True)
    wall = {name: statistics.median(w for w, _ in runs) for name, runs in figures.items()}
    cpu = {name: statistics.median(c for _, c in runs) for name, runs in figures.items()}
    print(f"default lab, median of {args.rounds}: wall {wall['before']:.1f} s -> {wall['after']:.1f} s "
          f"({wall['after'] / wall['before']:.2f}x), CPU {cpu['before']:.1f} s -> {cpu['after']:.1f} s "
          f"({cpu['after'] / cpu['before']:.2f}x)")


if __name__ == "__main__":
    main()
