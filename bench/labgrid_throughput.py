"""Records per second of boards reached directly against the same boards through labgrid, side by side.

    python bench/labgrid_throughput.py [--boards 1,2,4] [--samples 40] [--rounds 1]

One labgrid lab on localhost (tests/support/labgrid_rack.py): a coordinator and two exporters with
`--boards`' largest count of served Nucleo-L432KC boards between them (`hil board serve`). Each round, for
each board count N, `hil run` streams N of those boards twice, alternating so the machine's load falls on
both alike:
- local: the lab names each board's pty and its probe server directly (`port: <pty>`, `probe: remote:...`);
- labgrid: the lab names the places; the run reserves and acquires them, and streams through each exporter's
  ser2net over RFC2217 (`rfc2217://127.0.0.1:PORT`).
The rate is counted from the run's journal while it streams (records.jsonl, polled every 20 ms): records
between the first and the last journaled, over the time between them, so flashing and bring-up are not in
it. `to first` is the time from the command's start to its first record: lab loading, the coordinator's
reservation and acquisition, flashing and HELLO. Both must PASS. Not a test: the figures depend on the
machine; docs/distributed.md records them and what they say.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE))

from tests.support.benches import KIND, MODEL  # noqa: E402 - after the checkout is on the path
from tests.support.labgrid_rack import LabgridRack, labgrid_available, place_lab  # noqa: E402
from tests.support.labs import write_lab  # noqa: E402

POLL_S = 0.02


def stream(lab: Path, locks: Path) -> tuple[float, float]:
    """(records/s while streaming, s to the first record) of one `hil run lab`."""
    env = {**os.environ, "NO_COLOR": "1", "HIL_LOCK_DIR": str(locks), "PYTHONPATH": str(HERE)}
    results = lab.parent / "results"
    before = {p for p in results.glob("*")} if results.exists() else set()
    started = time.monotonic()
    process = subprocess.Popen([sys.executable, "-m", "hil.cli", "run", str(lab), "--json"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    counts: list[tuple[float, int]] = []  # (time, records journaled) whenever the count changed
    journal = None
    while process.poll() is None:
        if journal is None:
            made = [p for p in results.glob("*") if p.is_dir() and p not in before] if results.exists() else []
            journal = made[0] / "records.jsonl" if made else None
        if journal is not None and journal.exists():
            lines = journal.read_bytes().count(b"\n")
            if not counts or lines != counts[-1][1]:
                counts.append((time.monotonic(), lines))
        time.sleep(POLL_S)
    out, err = process.communicate()
    if process.returncode != 0 or json.loads(out)["mismatches"]:
        sys.exit(f"{lab}: hil run exited {process.returncode}:\n{err[-2000:]}")
    (first_t, first_n), (last_t, last_n) = counts[0], counts[-1]
    return (last_n - first_n) / (last_t - first_t), first_t - started


def local_lab(folder: Path, rack: LabgridRack, places: list[str], samples: int) -> Path:
    """The same boards as physical boards on their own pty and probe server: no labgrid on the way."""
    lab = write_lab(folder, boards={places[0]: (KIND, MODEL)}, samples=samples)
    data = yaml.safe_load(lab.read_text())
    template = data["boards"][0]
    boards = []
    for place in places:
        exporter = next(e for e in rack.exporters if place in e.boards)
        group = yaml.safe_load((exporter.folder / "exporter.yaml.d" / f"{place}.yaml").read_text())[place]
        boards.append({"slot": place, "kind": template["kind"], "model": template["model"],
                       "probe": {"unique_id": f"remote:{group['probe']['address']}:{group['probe']['port']}"},
                       "serial": {"port": str(exporter.folder / f"{place}.pty")}})
    data["boards"] = boards
    lab.write_text(yaml.safe_dump(data, sort_keys=False))
    return lab


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--boards", default="1,2,4", help="board counts to measure, comma-separated")
    parser.add_argument("--samples", type=int, default=40, help="samples per test set (3 test sets a board)")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    if not labgrid_available():
        sys.exit("labgrid, ser2net and qemu-system-arm are needed (bash setup.sh)")
    counts = [int(n) for n in args.boards.split(",")]
    largest = max(counts)
    layout = {"exp-a": [f"a{i}" for i in range(1, (largest + 1) // 2 + 1)],
              "exp-b": [f"b{i}" for i in range(1, largest // 2 + 1)]}
    with tempfile.TemporaryDirectory(prefix="hil-bench-labgrid-") as scratch, \
            LabgridRack(Path(scratch) / "labgrid") as rack:
        rack.start(layout)
        interleaved = [name for pair in zip(layout["exp-a"], layout["exp-b"] + [None]) for name in pair if name]
        figures: dict[tuple[int, str], list[tuple[float, float]]] = {}
        for round_ in range(args.rounds):
            for n in counts:
                places = interleaved[:n]  # spread over both exporters
                for mode in ("local", "labgrid"):
                    folder = Path(scratch) / f"r{round_}-{n}-{mode}"
                    folder.mkdir()
                    lab = local_lab(folder, rack, places, args.samples)
                    if mode == "labgrid":
                        lab = place_lab(lab, rack.coordinator, {p: p for p in places})
                    rate, to_first = stream(lab, Path(scratch) / "locks")
                    if mode == "labgrid":
                        time.sleep(3)  # the exporters stop their ser2nets (a poll, then up to 2 s): the ptys free
                    figures.setdefault((n, mode), []).append((rate, to_first))
                    print(f"round {round_ + 1}: {n} board(s) {mode:7} {rate:6.1f} records/s "
                          f"({rate / n:5.1f} per board), first record after {to_first:4.1f} s", flush=True)
        print(f"\nmedians over {args.rounds} round(s), {args.samples * 3} records a board:")
        print(f"{'boards':>6} {'local rec/s':>12} {'labgrid rec/s':>14} {'ratio':>6} {'per board +ms':>14} "
              f"{'first local':>12} {'first labgrid':>14}")
        for n in counts:
            local = statistics.median(r for r, _ in figures[(n, "local")])
            remote = statistics.median(r for r, _ in figures[(n, "labgrid")])
            first_local = statistics.median(f for _, f in figures[(n, "local")])
            first_remote = statistics.median(f for _, f in figures[(n, "labgrid")])
            # What a record costs one board more through labgrid: each board streams one request at a time.
            extra_ms = (n / remote - n / local) * 1000
            print(f"{n:>6} {local:>12.1f} {remote:>14.1f} {remote / local:>6.2f} {extra_ms:>14.2f} "
                  f"{first_local:>11.1f}s {first_remote:>13.1f}s")


if __name__ == "__main__":
    main()
