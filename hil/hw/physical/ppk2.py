"""A Nordic Power Profiler Kit II (labs.yaml: monitor kind `ppk2`), driven through ppk2-api.

The PPK2 samples the current every 10 us, auto-ranging over five shunts, and reads its eight digital
inputs D0..D7 with each sample; the board's busy and exit pins go to two of them. It sends every sample
as 4 bytes (bits 0-13 the ADC, 14-16 the range, 18-23 a counter, 24-31 the inputs), 400 kB/s over USB.
ppk2-api sets it up (its calibration from the device's metadata, source or ampere mode, the supply
voltage, start and stop) and turns each sample into microamperes with the device's calibration and the
nRF Connect app's spike filter (PPK2_API.get_samples). What ppk2-api leaves out, this link does:
- Time is the sample count: one tick per sample (clock_hz 100 kHz). The 6-bit counter finds samples
  lost on the way (the index skips them), so later samples and edges keep their time; the samples then
  leave a gap, and the windows it touches get no energy rather than a wrong one.
- Edges are where an input's level changes from one sample to the next, stamped with the first sample
  that shows it: windows and samples are aligned by construction. A pulse shorter than a sample can be
  missed (the exit pin's pulse at an early exit is one): `pins_sampled` tells the metering so.
- Power is the current times the supply voltage (vdd_mv: the PPK2's own in source mode, the board's
  supply in ampere mode). 100 k samples a second would swamp the metering, so they are averaged into
  spans of at most SPAN_SAMPLES, cut at each edge so that no span mixes busy and idle, except an edge's
  own span of EDGE_SPAN samples from the one before it: the sample an edge falls in is partly busy,
  and the spike filter smears a range change over the samples after it. Such a span overlaps only its own
  window, so its energy above idle (all of it) counts to that window (hil/hw/measurement.py's rule);
  the idle samples in it add nothing.
Every edge and span goes to the trace (<slot>.jsonl) as it is made, and every sample's raw word, as it came,
to <slot>.ppk2 beside it: with the calibration the trace's first line holds, any figure can be decoded
again from the device's own bytes.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import serial

from hil.hw.measurement import PIN_BUSY, PIN_EXIT, Edge, PowerSample
from hil.hw.monitor import HostReadLink, Monitor, MonitorError
from hil.lab.load import Ppk2Mode, Ppk2Spec
from hil.store import results

CLOCK_HZ = 100_000  # one tick per sample
SPAN_SAMPLES = 100  # 1 ms spans while nothing happens on the pins
# An edge's span: the sample before it (partly busy), its own, and the 3 after it that the spike filter
# may smear a range change over (it runs on the change's sample and the 2 after it).
EDGE_SPAN = 5
COUNTER_SHIFT, COUNTER_MASK = 18, 0x3F
LOGIC_SHIFT = 24
STALL_S = 2.0  # a measuring PPK2 streams without pause: silence this long means it is gone
READ_PAUSE_S = 0.005  # between reads of what has come: 2,000 bytes a time at full rate
OPEN_TIMEOUT_S = 2.0
CALIBRATION_KEYS = ("R", "GS", "GI", "O", "S", "I", "UG")  # ppk2-api's modifiers: per range, from the device


class Spans:
    """Samples into spans (see the module docstring), as they come."""

    def __init__(self) -> None:
        self.indices = np.zeros(0, dtype=np.int64)  # the samples not in a closed span yet: their indices
        self.watts = np.zeros(0)  # and their power
        self.edge_at: list[int] = []  # the indices of the edges whose spans may still be open

    def add(self, indices: np.ndarray, watts: np.ndarray, edge_at: list[int]) -> list[PowerSample]:
        """The spans that these samples (increasing indices, after the last ones) and the edges among them
        close. A span starts at every SPAN_SAMPLES boundary, after a lost sample, and one sample before an
        edge; an edge's span then runs EDGE_SPAN samples, whatever else would start inside it. The samples
        from the last start on stay held: the span they are in closes at the next start."""
        self.edge_at += sorted(set(edge_at))
        indices = self.indices = np.concatenate([self.indices, indices])
        self.watts = np.concatenate([self.watts, watts])
        gap = np.zeros(len(indices), dtype=bool)
        gap[1:] = np.diff(indices) != 1
        starts = gap | (indices % SPAN_SAMPLES == 0)
        self.edge_at = [at for at in self.edge_at if at + EDGE_SPAN > indices[0]]
        for at in self.edge_at:
            starts |= (indices == at - 1) | (indices == at - 1 + EDGE_SPAN)
        for at in self.edge_at:
            starts &= gap | (indices < at) | (indices > at - 2 + EDGE_SPAN)
        starts[0] = True
        cuts = np.flatnonzero(starts)
        if len(cuts) < 2:
            return []
        powers = np.add.reduceat(self.watts[:cuts[-1]], cuts[:-1]) / np.diff(cuts)
        ends = indices[cuts[1:] - 1] + 1
        spans = list(map(PowerSample, indices[cuts[:-1]].tolist(), ends.tolist(), powers.tolist()))
        self.indices, self.watts = indices[cuts[-1]:], self.watts[cuts[-1]:]
        return spans


class SampleStream:
    """A PPK2's sample words into edges and spans, as they come (see the module docstring)."""

    def __init__(self, decode: Callable[[bytes], tuple[list[float], list[int]]], volts: float, busy_channel: int,
                 exit_channel: int):
        """`decode`: ppk2-api's PPK2_API.get_samples (whole samples -> microamperes, logic bits)."""
        self.decode, self.volts = decode, volts
        self.channels = (busy_channel, exit_channel)
        self.lost_samples = 0
        self._next_index = 0  # the index of the next sample to come
        self._last_counter: int | None = None
        self._levels: tuple[int, int] | None = None  # busy and exit at the last sample
        self._spans = Spans()

    def take(self, data: bytes) -> tuple[list[Edge], list[PowerSample]]:
        """The edges in these whole samples, and the spans they close; ValueError if they do not decode."""
        words = np.frombuffer(data, dtype="<u4")
        microamps, _ = self.decode(data)
        if len(microamps) != len(words):
            raise ValueError("the PPK2 sent samples outside its ranges; check its firmware")
        counters = (words >> COUNTER_SHIFT & COUNTER_MASK).astype(np.int64)
        previous = counters[0] - 1 if self._last_counter is None else self._last_counter
        steps = (np.diff(counters, prepend=previous) - 1 & COUNTER_MASK) + 1  # 1 unless samples were lost
        self._last_counter = int(counters[-1])
        self.lost_samples += int(steps.sum()) - len(steps)
        indices = self._next_index - 1 + np.cumsum(steps)
        self._next_index = int(indices[-1]) + 1
        logic = words >> LOGIC_SHIFT
        busy, exit_pin = ((logic >> channel & 1).astype(np.int8) for channel in self.channels)
        if self._levels is None:  # the levels before the first sample are taken as the first's
            self._levels = (int(busy[0]), int(exit_pin[0]))
        edges: list[Edge] = []
        for pin, levels, before in ((PIN_BUSY, busy, self._levels[0]), (PIN_EXIT, exit_pin, self._levels[1])):
            changed = np.flatnonzero(np.diff(levels, prepend=before))
            edges += [Edge(pin, int(levels[i]), int(indices[i])) for i in changed]
        self._levels = (int(busy[-1]), int(exit_pin[-1]))
        edges.sort(key=lambda edge: (edge.at, edge.pin == PIN_BUSY))  # exit before busy at one sample
        watts = np.asarray(microamps) * (1e-6 * self.volts)
        return edges, self._spans.add(indices, watts, [edge.at for edge in edges])


class Ppk2Link(HostReadLink):
    """What the metering reads (hil/run/metering.py), as MonitorLink offers it: flush, clock, conversion."""

    pins_sampled = True
    settle_ticks = EDGE_SPAN - 1  # the last window's fall closes only with its edge's span
    fix = "check its USB cable and power"

    def __init__(self, name: str, port: str, spec: Ppk2Spec, trace_path: Path):
        try:  # imported here: a lab without a PPK2 does not need it
            from ppk2_api.ppk2_api import PPK2_API
        except ImportError:
            raise MonitorError(f"{name}: a ppk2 unit needs the ppk2-api package; install hil with its "
                               "dependencies") from None
        super().__init__(name, trace_path)
        self.spec = spec
        self.clock_hz = CLOCK_HZ
        self.conversion_ticks = 1
        self._stopping = threading.Event()
        try:
            self.ppk2 = PPK2_API(port, timeout=OPEN_TIMEOUT_S, write_timeout=OPEN_TIMEOUT_S)
        except (serial.SerialException, OSError) as error:
            raise MonitorError(f"{name}: cannot open the PPK2 at {port} ({error}); is another program using "
                               "it?") from None
        try:
            self._set_up(port, spec)
            with results.on_disk(trace_path):
                self._trace = open(trace_path, "a", encoding="utf-8")
                self._raw = open(trace_path.with_suffix(".ppk2"), "ab")
        except BaseException:
            self.ppk2.ser.close()
            raise
        self._pending = bytearray()  # bytes of a sample not yet whole
        self._stream = SampleStream(self.ppk2.get_samples, spec.vdd_mv / 1000, spec.busy_channel, spec.exit_channel)
        self._write_trace({"unit": "ppk2", **self.unit_id, "mode": spec.mode.value, "vdd_mv": spec.vdd_mv,
                           "clock_hz": CLOCK_HZ, "channels": [spec.busy_channel, spec.exit_channel],
                           "calibration": {key: self.ppk2.modifiers[key] for key in CALIBRATION_KEYS}})
        self.ppk2.start_measuring()
        self._thread = threading.Thread(target=self._read, name=f"{name} samples", daemon=True)
        self._thread.start()

    def _set_up(self, port: str, spec: Ppk2Spec) -> None:
        if not self.ppk2.get_modifiers():
            raise MonitorError(f"{self.name}: no PPK2 answers at {port} (it sent no calibration); check the "
                               "port and that it is a PPK2")
        self.unit_id = {key: self.ppk2.modifiers[key] for key in ("HW", "IA", "Calibrated")}
        if spec.mode is Ppk2Mode.SOURCE:
            self.ppk2.use_source_meter()
        else:
            self.ppk2.use_ampere_meter()
        # In ampere mode this sets no output; ppk2-api needs the voltage for its calibration's S term.
        self.ppk2.set_source_voltage(spec.vdd_mv)
        if spec.mode is Ppk2Mode.SOURCE:
            self.ppk2.toggle_DUT_power("ON")

    def _read(self) -> None:
        quiet_since = time.monotonic()
        try:
            while not self._stopping.is_set():
                data = self.ppk2.get_data()
                if not data:
                    if time.monotonic() - quiet_since > STALL_S:
                        self.problem = f"the PPK2 stopped streaming (nothing for {STALL_S:.0f} s)"
                        return
                    time.sleep(READ_PAUSE_S)
                    continue
                quiet_since = time.monotonic()
                self._pending += data
                whole = len(self._pending) // 4 * 4
                if whole:
                    # Whole samples only: get_samples decodes a partial one as if it were whole.
                    self._take(bytes(self._pending[:whole]))
                    del self._pending[:whole]
        except (serial.SerialException, OSError) as error:
            self.problem = f"the PPK2's port failed ({error})"

    def _take(self, data: bytes) -> None:
        try:
            edges, spans = self._stream.take(data)
        except ValueError as error:
            self.problem = str(error)
            return
        with self._lock:
            self.edges.extend(edges)
            self.samples.extend(spans)
        self._write_raw(data)
        if edges:
            self._write_trace({"edges": [[edge.pin, edge.level, edge.at] for edge in edges]})
        if spans:
            self._write_trace({"spans": [[span.start, span.end, span.power_w] for span in spans],
                               "lost": self._stream.lost_samples})

    def _write_trace(self, entry: dict) -> None:
        self._on_disk(lambda: self._trace.write(json.dumps(entry) + "\n"))

    def _write_raw(self, data: bytes) -> None:
        self._on_disk(lambda: self._raw.write(data))

    def _flush_files(self) -> None:
        self._on_disk(lambda: (self._trace.flush(), self._raw.flush()))

    def close(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=1.0)
        for part in (self.ppk2.stop_measuring, self.ppk2.ser.close, self._trace.close, self._raw.close):
            try:
                part()
            except (serial.SerialException, OSError):
                pass  # going away anyway; the problem, if any, is already recorded


class Ppk2Monitor(Monitor):
    """A PPK2 on a USB serial port, the board's pins on two of its digital inputs."""

    def __init__(self, slot: str, traces_dir: Path, port: str, spec: Ppk2Spec):
        super().__init__(slot, traces_dir)
        self.port, self.spec = port, spec

    def start(self) -> Ppk2Link:
        self.traces_dir.mkdir(parents=True, exist_ok=True)
        self.link = Ppk2Link(f"{self.slot} monitor", self.port, self.spec, self.traces_dir / f"{self.slot}.jsonl")
        return self.link
