"""What the kernel conformance suite adds to bring-up, per board, on the emulated rack of a lab: measured side by side.

    python bench/conformance.py [--lab labs.yaml] [--rounds 3]

Each round brings the lab's whole rack up twice, as `hil run` does (locked, flashed through the emulated probe,
QEMU booted, identified, health-checked), once with the health check's conformance suite and once without,
alternating which goes first so that the machine's load falls on both alike; the rack is shut down after each.
Reported: the rack's bring-up wall time with and without the suite (boards come up in parallel), and per board
the time its run of the suite took (hil/run/conformance.py's own clock, the board's share of the difference).
Not a test: the figures depend on the machine; docs/conformance.md records them.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE))

from hil.firmware.conformance import read_suite  # noqa: E402
from hil.lab.load import load_lab  # noqa: E402
from hil.run import health  # noqa: E402
from hil.run.rack import Rack, reserve  # noqa: E402


def bring_up(lab, slots: list[str], answers, suite, traces: Path) -> tuple[float, dict[str, float]]:
    """(the rack's bring-up wall time in s, per board the seconds its suite took) for one bring-up."""
    check = health.KnownAnswerCheck(answers, lab.run.threshold_q15, lab.run.retries, suite)
    started = time.monotonic()
    with Rack(lab, slots, lab.run.threshold_q15, traces, check) as rack:
        wall = time.monotonic() - started
        if rack.failures:
            sys.exit(f"bring-up failed: {rack.failures}")
    differing = [c.line for c in check.conformance.values() if c.mismatch is not None]
    if differing:
        sys.exit("\n".join(differing))
    return wall, {slot: c.seconds for slot, c in check.conformance.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lab", default=str(HERE / "labs.yaml"))
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    lab = load_lab(Path(args.lab))
    slots = [spec.slot for spec in lab.boards]
    suite, answers = read_suite(), health.known_answers(lab)
    walls: dict[str, list[float]] = {"without": [], "with": []}
    per_board: dict[str, list[float]] = {slot: [] for slot in slots}
    with tempfile.TemporaryDirectory(prefix="hil-bench-") as scratch, reserve(lab, slots) as lab:
        for round_ in range(args.rounds):
            order = ("without", "with") if round_ % 2 == 0 else ("with", "without")
            for name in order:
                wall, seconds = bring_up(lab, slots, answers, suite if name == "with" else None,
                                         Path(scratch) / f"{round_}-{name}")
                walls[name].append(wall)
                for slot, spent in seconds.items():
                    per_board[slot].append(spent)
                print(f"round {round_ + 1}: {name:7} suite: rack up in {wall:6.2f} s", flush=True)
    without, with_suite = statistics.median(walls["without"]), statistics.median(walls["with"])
    print(f"\nsuite {suite.sha256[:12]}…, {len(suite.vectors)} vectors; {len(slots)} boards, {args.rounds} rounds")
    print(f"rack bring-up, median: {without:.2f} s without the suite, {with_suite:.2f} s with it "
          f"({with_suite - without:+.2f} s)\n")
    print("| board | kind | suite s (median) | max |")
    print("|---|---|---|---|")
    kinds = {spec.slot: spec.kind for spec in lab.boards}
    for slot, spent in per_board.items():
        print(f"| {slot} | {kinds[slot]} | {statistics.median(spent):.2f} | {max(spent):.2f} |")


if __name__ == "__main__":
    main()
