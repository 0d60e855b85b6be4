"""Host CPU per measured inference: monitor protocol v1 (a frame per conversion) against v1.1 (batches).

    python bench/monitor_host_cpu.py [--inferences 600] [--rounds 5]

One recorded stream per unit of the default lab (its four boards' p50 latencies from
docs/measurement.md, 80% early exits, 6.2 ms between inferences, a FLUSH every 50 inferences) is
made by the emulated unit's own model (hil/hw/emulated/monitor_unit.py, same seed for both
versions, so the registers are the same), once as v1 and once as v1.1. Then, side by side in this
process, the host's MonitorLink takes each stream as it takes a unit's bytes: de-framing (COBS,
CRC), parsing, decoding the INA219 registers and writing the trace, timed with time.process_time.
Both paths must give the same edges and samples, and the bench checks that they do. Not a test:
figures depend on the machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import serial

from hil.hw import ina219
from hil.hw import monitor_protocol as mp
from hil.hw import protocol
from hil.hw.channel import Framing
from hil.hw.emulated.monitor_unit import EmulatedUnit
from hil.hw.kinds import BOARD_KINDS
from hil.hw.monitor import MonitorLink, PowerDecoder, measurement_config

GAP_S, EXIT_RATE, FLUSH_EVERY, CHUNK = 6.2e-3, 0.8, 50, 4096


@dataclass(frozen=True)
class Workload:
    slot: str
    kind: str
    clock_hz: int
    exit_ms: float
    full_ms: float
    max_current_a: float


DEFAULT_LAB = [
    Workload("l432-digits", "nucleo-l432kc", 80_000_000, 27.03, 67.97, 0.04),
    Workload("l432-mnist1d", "nucleo-l432kc", 80_000_000, 8.63, 21.52, 0.04),
    Workload("an500-digits", "mps2-an500", 25_000_000, 6.54, 16.67, 0.4),
    Workload("an500-mnist1d", "mps2-an500", 25_000_000, 2.11, 5.24, 0.4),
]


def record(workload: Workload, version: int, inferences: int) -> tuple[bytes, ina219.Calibration]:
    """The bytes a unit speaking `version` sends for this workload."""
    profile = BOARD_KINDS[workload.kind].power
    calibration = ina219.Calibration.for_range(profile.shunt_ohms, workload.max_current_a)
    framing, sent = Framing("unit", mp.MonitorMessage), []
    unit = EmulatedUnit(profile, workload.clock_hz, None, 0, lambda m, seq=None: sent.append(framing.encode(m, seq)[1]),
                        version)
    config = measurement_config(calibration, workload.max_current_a)
    unit.on_request(mp.Configure(config.register, calibration.register))
    ticks = lambda ms: round(ms * workload.clock_hz / 1000)  # noqa: E731
    t = 1000
    for i in range(inferences):
        exited = (i * 7919) % 100 < EXIT_RATE * 100  # a fixed, spread-out 80%
        busy = ticks(workload.exit_ms if exited else workload.full_ms)
        edges = [(0, 1, t), (0, 0, t + busy)]
        if exited:
            edges[1:1] = [(1, 1, t + busy - ticks(0.05))]
            edges.append((1, 0, t + busy))
        for pin, level, at in edges:
            unit.on_edge(protocol.Edge(pin, level, at % (1 << 32)))
        t += busy + ticks(GAP_S * 1000)
        if (i + 1) % FLUSH_EVERY == 0 or i + 1 == inferences:
            unit.on_request(mp.Flush())
    return b"".join(sent), calibration


def host_cpu(stream: bytes, calibration: ina219.Calibration, trace: Path) -> tuple[float, list, list]:
    """CPU seconds the host's MonitorLink spends on the stream, and the edges and samples it made."""
    link = MonitorLink(serial.serial_for_url("loop://", timeout=0.1), "bench monitor", trace)
    link.calibration, link.decoder = calibration, PowerDecoder(calibration)  # as configure() sets them
    try:
        started = time.process_time()
        for offset in range(0, len(stream), CHUNK):
            for event in link.channel.decode(stream[offset:offset + CHUNK]):
                link._on_frame(event)  # what the link's reading thread does with each frame
        link._write_trace(None)
        spent = time.process_time() - started
        return spent, link.edges, link.samples
    finally:
        link.close()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python bench/monitor_host_cpu.py", description=__doc__.splitlines()[0])
    parser.add_argument("--inferences", type=int, default=600, help="per unit")
    parser.add_argument("--rounds", type=int, default=5, help="the median of this many is shown")
    args = parser.parse_args(argv)
    print(f"host CPU per measured inference (decode + trace), median of {args.rounds} rounds, "
          f"{args.inferences} inferences per unit")
    print(f"  {'unit':14} {'v1 bytes':>9} {'v1.1 bytes':>10} {'v1 µs/inf':>10} {'v1.1 µs/inf':>11} {'ratio':>6}")
    totals = {mp.VERSION_1: 0.0, mp.VERSION_1_1: 0.0}
    with tempfile.TemporaryDirectory() as scratch:
        for workload in DEFAULT_LAB:
            streams = {v: record(workload, v, args.inferences) for v in totals}
            spent: dict[int, list[float]] = {v: [] for v in totals}
            results = {}
            for round_ in range(args.rounds):
                for version, (stream, calibration) in streams.items():  # side by side, alternating
                    seconds, edges, samples = host_cpu(stream, calibration, Path(scratch) / f"{version}-{round_}.jsonl")
                    spent[version].append(seconds)
                    results[version] = (edges, samples)
            if results[mp.VERSION_1] != results[mp.VERSION_1_1]:
                print(f"{workload.slot}: v1 and v1.1 decoded to different edges or samples; fix the decoder")
                return 1
            per = {v: statistics.median(s) / args.inferences * 1e6 for v, s in spent.items()}
            for version in totals:
                totals[version] += statistics.median(spent[version])
            print(f"  {workload.slot:14} {len(streams[1][0]):9} {len(streams[2][0]):10} {per[1]:10.1f} {per[2]:11.1f} "
                  f"{per[1] / per[2]:5.1f}x")
    inferences = args.inferences * len(DEFAULT_LAB)
    v1, v11 = (totals[v] / inferences * 1e6 for v in (mp.VERSION_1, mp.VERSION_1_1))
    print(f"  {'all':14} {'':9} {'':10} {v1:10.1f} {v11:11.1f} {v1 / v11:5.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
