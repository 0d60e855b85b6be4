"""Host CPU of a PPK2 (hil/hw/physical/ppk2.py): what the 100 k samples a second cost the host.

    python bench/ppk2_host_cpu.py [--inferences 100] [--rounds 3]

For each board of the default lab (its p50 latencies, 80% early exits, 6.2 ms between inferences, as
bench/monitor_host_cpu.py), a PPK2's stream of sample words is made (idle 2.1 mA on range 1, busy 8.8 mA
on range 2, with noise; the counter; busy and exit on D0 and D1) and taken, side by side in this process:
- decode: ppk2-api's PPK2_API.get_samples alone, the floor any host of a PPK2 pays;
- hil: SampleStream.take, that decode plus counters, edges and spans, in 5 ms reads as the link reads;
- metering, of every inference's window energy (hil/hw/measurement.py), from one PowerSample per sample
  against from the spans: its CPU, and each one's worst error against the stream's true energy above
  idle (the samples lose the spike filter's lag after the rising edge, which the spans keep).
timed with time.process_time. Not a test: figures depend on the machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

from hil.hw.measurement import PowerSample, busy_windows, idle_power, window_energies
from hil.hw.physical.ppk2 import CLOCK_HZ, SampleStream
from monitor_host_cpu import DEFAULT_LAB, EXIT_RATE, GAP_S

READ_BYTES = 2000  # 5 ms of samples: what the link takes at a time
IDLE_A, BUSY_A, VDD_V = 0.0021, 0.0088, 3.3


def words(exit_ms: float, full_ms: float, inferences: int, rng: np.random.Generator) -> bytes:
    """A PPK2's stream for these inferences, as the device sends it."""
    ms = lambda value: round(value * CLOCK_HZ / 1000)  # noqa: E731
    busy, exit_pin = [], []
    for i in range(inferences):
        exited = (i * 7919) % 100 < EXIT_RATE * 100
        length = ms(exit_ms if exited else full_ms)
        busy += [0] * ms(GAP_S * 1000) + [1] * length
        exit_pin += [0] * ms(GAP_S * 1000) + [0] * (length - 5) + [int(exited)] * 5
    busy += [0] * ms(GAP_S * 1000)  # idle after the last, so that its window closes
    exit_pin += [0] * ms(GAP_S * 1000)
    busy, exit_pin = np.array(busy, dtype=np.uint32), np.array(exit_pin, dtype=np.uint32)
    ranges = np.where(busy == 1, 2, 1).astype(np.uint32)
    shunt = np.where(busy == 1, 10.15, 101.65)  # ppk2-api's default resistors for those ranges
    codes = np.rint(np.where(busy == 1, BUSY_A, IDLE_A) * shunt / (1.8 / 163840) / 4
                    + rng.normal(0, 1, len(busy))).astype(np.uint32)
    counter = np.arange(len(busy), dtype=np.uint32) & 0x3F
    return (codes | ranges << 14 | counter << 18 | (busy | exit_pin << 1) << 24).astype("<u4").tobytes()


def ppk2_api(port: str):
    from ppk2_api.ppk2_api import PPK2_API

    api = PPK2_API(port)  # nothing is read from the port
    api.current_vdd = round(VDD_V * 1000)
    api.modifiers["GS"] = {str(r): 0.0 for r in range(5)}  # a linear calibration, as words() encodes
    return api


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python bench/ppk2_host_cpu.py", description=__doc__.splitlines()[0])
    parser.add_argument("--inferences", type=int, default=100, help="per board")
    parser.add_argument("--rounds", type=int, default=3, help="the median of this many is shown")
    args = parser.parse_args(argv)
    master, slave = os.openpty()
    port = os.ttyname(slave)
    rng = np.random.default_rng(0)
    print(f"host CPU of a PPK2, median of {args.rounds} rounds, {args.inferences} inferences per board")
    print(f"  {'board':14} {'samples':>8} {'spans':>6} {'decode µs/sample':>16} {'hil µs/sample':>13} "
          f"{'core at 100 kS/s':>16} {'metering per-sample/spans':>26} {'err samples':>13} {'err spans':>11}")
    for workload in DEFAULT_LAB:
        stream = words(workload.exit_ms, workload.full_ms, args.inferences, rng)
        count = len(stream) // 4
        decode_s, hil_s, meter_samples_s, meter_spans_s = [], [], [], []
        sample_errors, span_errors = [], []
        for _ in range(args.rounds):
            api = ppk2_api(port)
            started = time.process_time()
            for offset in range(0, len(stream), READ_BYTES):
                api.get_samples(stream[offset:offset + READ_BYTES])
            decode_s.append(time.process_time() - started)
            api = ppk2_api(port)
            sample_stream = SampleStream(api.get_samples, VDD_V, 0, 1)
            edges, spans = [], []
            started = time.process_time()
            for offset in range(0, len(stream), READ_BYTES):
                more_edges, more_spans = sample_stream.take(stream[offset:offset + READ_BYTES])
                edges += more_edges
                spans += more_spans
            hil_s.append(time.process_time() - started)
            microamps, _ = ppk2_api(port).get_samples(stream)
            per_sample = [PowerSample(i, i + 1, ua * 1e-6 * VDD_V) for i, ua in enumerate(microamps)]
            windows = busy_windows(edges)
            energies = {}
            for samples, spent in ((per_sample, meter_samples_s), (spans, meter_spans_s)):
                started = time.process_time()
                energies[id(spent)] = window_energies(windows, samples, idle_power(samples, windows), CLOCK_HZ)
                spent.append(time.process_time() - started)
            true = [(BUSY_A - IDLE_A) * VDD_V * w.ticks / CLOCK_HZ for w in windows]
            if len(windows) != args.inferences or None in energies[id(meter_spans_s)]:
                print(f"{workload.slot}: {len(windows)} windows of {args.inferences} were found or metered")
                return 1
            for spent, errors in ((meter_samples_s, sample_errors), (meter_spans_s, span_errors)):
                errors.append(max(abs(e - t) / t for e, t in zip(energies[id(spent)], true)))
        decode, hil = (statistics.median(s) / count * 1e6 for s in (decode_s, hil_s))
        meter_ratio = statistics.median(meter_samples_s) / statistics.median(meter_spans_s)
        print(f"  {workload.slot:14} {count:8} {len(spans):6} {decode:16.2f} {hil:13.2f} "
              f"{hil * 1e-6 * CLOCK_HZ:15.0%} {meter_ratio:25.0f}x {max(sample_errors):13.3%} {max(span_errors):11.3%}")
    os.close(master), os.close(slave)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
