"""Bytes per second each measurement unit of a run sent the host, from the run's traces.

    python bench/link_rate.py [results/<run>]      (default: the newest run under results/)

Every trace line is one frame the unit sent (docs/monitor.md), v1 (`edge`, `sample`) or v1.1
(`edges`, `samples`, `run`): each is framed again as the unit framed it and counted. Requests and
their replies (HELLO, CONFIGURE, FLUSH: a few bytes per flush) are not in the trace and not counted.
The rate is per second of the unit's clock, the time a real unit on a real board sends in; at
8N1 a byte takes 10 bits on the line.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from hil.hw import monitor_protocol as mp
from hil.hw.channel import Framing

BAUD = 115_200
CONVERSION_S = 2.13e-3  # the host's configuration (hil/hw/monitor.py): 12 bits, 4 averaged


def frames_of(line: dict) -> list:
    if "edge" in line:
        return [mp.MonitorEdge(*line["edge"])]
    if "sample" in line:
        return [mp.Sample(*line["sample"], *line["registers"])]
    if "edges" in line:
        return mp.batch_edges([tuple(e) for e in line["edges"]])
    if "samples" in line:
        return [mp.Samples(*line["samples"], line["bus"], np.array(line["registers"], dtype=np.uint16))]
    if "run" in line:
        return [mp.SampleRun(*line["run"], *line["registers"])]
    return []  # the unit's INFO, as the host traced it


def span_ticks(line: dict) -> tuple[int, int] | None:
    if "sample" in line:
        return line["sample"][0], line["sample"][1]
    if "samples" in line:
        start, ticks = line["samples"]
        return start, start + ticks * len(line["registers"])
    if "run" in line:
        start, ticks, count = line["run"]
        return start, start + ticks * count
    return None


def unit_rate(trace: Path) -> dict:
    framing = Framing("unit", mp.MonitorMessage)
    counts: dict[str, list[int]] = {}  # frame type -> [frames, bytes]
    first = last = None
    conversion_ticks = None
    for text in trace.read_text().splitlines():
        line = json.loads(text)
        for message in frames_of(line):
            entry = counts.setdefault(message.TYPE.name, [0, 0])
            entry[0] += 1
            entry[1] += len(framing.encode(message)[1])
        span = span_ticks(line)
        if span is not None:
            first = span[0] if first is None else first
            last = span[1]
            conversion_ticks = conversion_ticks or (line.get("samples") or line.get("run") or
                                                    [0, line["sample"][1] - line["sample"][0]])[1]
    clock_hz = round(conversion_ticks / CONVERSION_S / 1e6) * 1e6  # 25 or 80 MHz on the default lab
    seconds = (last - first) / clock_hz
    total = sum(b for _, b in counts.values())
    return {"counts": counts, "seconds": seconds, "bytes_per_s": total / seconds}


def main(argv: list[str]) -> int:
    runs = sorted(p for p in Path("results").glob("2*") if p.is_dir())
    run = Path(argv[0]) if argv else (runs[-1] if runs else None)
    if run is None or not (run / "traces").is_dir():
        print("bench/link_rate.py: no run with traces; run `hil run labs.yaml` first, or name results/<run>")
        return 2
    print(f"{run}: bytes the measurement units sent, per second of unit time (8N1: 10 bits a byte)")
    for trace in sorted((run / "traces").glob("*.jsonl")):
        if trace.name.endswith(".truth.jsonl"):
            continue
        rate = unit_rate(trace)
        kbit = rate["bytes_per_s"] * 10 / 1000
        mix = ", ".join(f"{name} {frames} frames {size} B" for name, (frames, size) in sorted(rate["counts"].items()))
        print(f"  {trace.stem:14} {rate['seconds']:7.1f} s  {rate['bytes_per_s']:8.0f} B/s  {kbit:6.1f} kbit/s  "
              f"{kbit * 1000 / BAUD:5.0%} of {BAUD} baud   ({mix})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
