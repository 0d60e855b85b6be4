"""Measurement units: the hardware edge that watches a board's pins and supply.

One host class, MonitorLink, speaks monitor protocol v1.1, or v1 to an older unit (docs/monitor.md), over any
pyserial port. Two kinds of unit sit behind it:
- SerialMonitor (hw/physical/monitor.py): a physical unit (a small MCU with a capture input
  on the DUT's pins and an INA219 on its supply) on a USB serial port named in labs.yaml;
- EmulatedMonitor (hw/emulated/monitor.py): hil.hw.emulated.monitor_unit in its own process,
  reading the emulated board's edge records and modelling the INA219; it offers a pty, and
  from there on it is the same path.
Units the host reads itself (hw/physical/linux_ina219.py: an INA219 on the runner's I2C, the pins on
its GPIO lines; hw/physical/ppk2.py: a Nordic PPK2 through ppk2-api) give the metering the same
flush/clock_hz/conversion_ticks/pins_sampled, without the protocol.
The host configures the INA219 with the calibration from the lab (shunt ohms, max current)
and decodes the raw registers itself, so the decoding is tested as the product runs it; v1.1's
batches are decoded a batch at a time (PowerDecoder), to the same floats as ina219.decode.
Everything the unit sends is appended to the run's trace file as it arrives, a line per frame, raw
registers included, so a figure can be checked against the registers it came from; when the
results disk fails, the trace stops there and the next flush raises ResultsUnwritable.
The framing, sequence numbers, reading thread and reply matching are hw/channel.py's.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np
import serial

from hil.hw import ina219
from hil.hw import protocol
from hil.hw.channel import Channel, ChannelLost, Replies, Tap
from hil.store import results
from hil.hw import monitor_protocol as mp
from hil.errors import HilError, ResultsUnwritable
from hil.hw.measurement import Edge, PowerSample, busy_windows

REQUEST_TIMEOUT_S = 5.0
log = logging.getLogger(__name__)


class MonitorError(HilError):
    """The measurement unit is silent, garbled or gone (exit code 2); inference records are kept."""


def measurement_config(calibration: ina219.Calibration, max_current_a: float) -> ina219.Config:
    """Shunt-only continuous, 12 bits averaged over 4: back-to-back 2.13 ms conversions that
    tile time, which the energy estimate in hil/hw/measurement.py relies on. (Shunt and bus
    continuous would leave the shunt blind half the time; no averaging would send four times
    the samples for the same figures, since short inferences are metered in bursts anyway.)
    The unit takes one bus reading first, so POWER has a voltage to multiply with."""
    gain = ina219.pga_gain_for(calibration.shunt_ohms, max_current_a)
    return ina219.Config(bus_range_v=16, pga_gain=gain, badc=0b0011, sadc=0b1010, mode=0b101)


class PowerDecoder:
    """POWER registers -> watts for a batch, with the calibration fixed. Each register value's
    float is ina219.decode's own (the exact product, rounded once), computed the first time the
    value is seen and looked up after that, so a batch decodes to exactly the per-sample figures."""

    def __init__(self, calibration: ina219.Calibration):
        self.calibration = calibration
        self._watts = np.full(1 << 16, np.nan)  # by POWER register value; NaN: not computed yet

    def _decode_one(self, power: int) -> float:
        registers = ina219.Registers(0, 0, 0, power, 0, self.calibration.register)
        watts = ina219.decode(registers, self.calibration.shunt_ohms).power_w
        assert watts is not None  # a Calibration's register is never 0, and bus 0 has no OVF
        return watts

    def power_w(self, power: np.ndarray, bus: int) -> list[float | None]:
        """The power of each conversion of a batch with this (shared) bus register; None: OVF."""
        if bus & ina219.OVF:
            return [None] * len(power)
        watts = self._watts[power]
        missing = np.isnan(watts)
        if missing.any():
            for value in np.unique(power[missing]).tolist():
                self._watts[value] = self._decode_one(value)
            watts = self._watts[power]
        return watts.tolist()


class MonitorLink:
    def __init__(self, port: serial.SerialBase, name: str, trace_path: Path, tap: Tap | None = None):
        self.channel = Channel(port, name, mp.MonitorMessage, tap)
        self.name = name
        self.edges: list[Edge] = []
        self.samples: list[PowerSample] = []
        self.calibration: ina219.Calibration | None = None
        self.decoder: PowerDecoder | None = None  # set with calibration
        self.version = 0  # the unit's INFO.version
        self.clock_hz = 0
        self.conversion_ticks = 0
        self.problem: str | None = None  # what broke the link, once something did
        self.pins_sampled = False  # edges are timestamped as they happen, not read off samples
        self._replies = Replies()
        self._lock = threading.Lock()
        self.trace_path = trace_path
        self.trace_failure: ResultsUnwritable | None = None  # the disk error that stopped the trace
        with results.on_disk(trace_path):
            self._trace = open(trace_path, "a", encoding="utf-8")
        self._listener = self.channel.listen(self._on_frame, self._on_lost)

    @property
    def port(self) -> serial.SerialBase:
        return self.channel.port

    def _on_lost(self, error: ChannelLost) -> None:
        self.problem = f"link lost ({error.reason})"

    def _on_frame(self, event: protocol.Frame | protocol.FrameError) -> None:
        if isinstance(event, protocol.FrameError):
            self.problem = f"garbled data from the unit ({event.code.name})"
            return
        try:
            message = mp.parse_monitor_message(event)
        except protocol.ProtocolError as error:
            self.problem = f"garbled data from the unit ({error})"
            return
        if isinstance(message, (mp.Samples, mp.SampleRun, mp.Edges)):
            self._take_batch(message)
        elif isinstance(message, (mp.MonitorEdge, mp.Sample)):
            self._take(message)
        else:
            self._replies.put(event, message)

    def _take(self, message) -> None:
        if isinstance(message, mp.MonitorEdge):
            with self._lock:
                self.edges.append(Edge(message.pin, message.level, message.at))
            self._write_trace({"edge": [message.pin, message.level, message.at]})
        elif isinstance(message, mp.Sample):
            power = None
            if self.calibration is not None:
                # A SAMPLE carries no CONFIG register, and decoding does not need one.
                registers = ina219.Registers(0, message.shunt, message.bus, message.power, message.current,
                                             self.calibration.register)
                power = ina219.decode(registers, self.calibration.shunt_ohms).power_w
            with self._lock:
                self.samples.append(PowerSample(message.start, message.end, power))
            self._write_trace({"sample": [message.start, message.end], "registers": [
                message.shunt, message.bus, message.power, message.current], "power_w": power})

    def _take_batch(self, message: mp.Samples | mp.SampleRun | mp.Edges) -> None:
        """v1.1: a batch of edges or conversions, decoded at once and traced as one line."""
        if isinstance(message, mp.Edges):
            triples = message.edges()
            with self._lock:
                self.edges.extend(Edge(pin, level, at) for pin, level, at in triples)
            self._write_trace({"edges": triples})
            return
        if isinstance(message, mp.Samples):
            count, bus, power_registers = len(message.registers), message.bus, message.registers[:, 1]
            trace: dict = {"samples": [message.start, message.ticks], "bus": bus,
                           "registers": message.registers.tolist()}
        else:
            count, bus, power_registers = message.count, message.bus, np.array([message.power], dtype=np.uint16)
            trace = {"run": [message.start, message.ticks, count],
                     "registers": [message.shunt, bus, message.power, message.current]}
        if self.decoder is None:  # samples before CONFIGURE: nothing to decode them with
            powers: list[float | None] = [None] * len(power_registers)
        else:
            powers = self.decoder.power_w(power_registers, bus)
        if isinstance(message, mp.SampleRun):
            powers = powers * count
        starts = range(message.start, message.start + count * message.ticks, message.ticks)
        ends = range(message.start + message.ticks, message.start + (count + 1) * message.ticks, message.ticks)
        with self._lock:
            self.samples.extend(map(PowerSample, starts, ends, powers))
        trace["power_w"] = powers if isinstance(message, mp.Samples) else powers[0]
        self._write_trace(trace)

    def _write_trace(self, entry: dict | None) -> None:
        """A trace line (None: flush). After a disk error the trace stops, the edges still count in memory."""
        if self.trace_failure is not None:
            return
        try:
            if entry is None:
                self._trace.flush()
            else:
                self._trace.write(json.dumps(entry) + "\n")
        except OSError as error:
            problem = results.disk_problem(error)
            if problem is None:
                raise
            self.trace_failure = results.unwritable(self.trace_path, problem)

    def request(self, message, timeout: float = REQUEST_TIMEOUT_S):
        try:
            seq = self.channel.send(message)
        except ChannelLost as error:
            raise MonitorError(f"{self.name}: monitor link lost ({error.reason}); "
                               "check the measurement unit") from None
        reply = self._replies.wait(seq, timeout)
        if reply is None:
            why = f" ({self.problem})" if self.problem else ""
            raise MonitorError(f"{self.name}: the measurement unit did not answer {type(message).__name__} "
                               f"within {timeout:.0f} s{why}; check it and its port")
        if isinstance(reply, protocol.ErrorReply):
            raise MonitorError(f"{self.name}: the measurement unit refused {type(message).__name__}: "
                               f"{reply.code.name}")
        return reply

    def configure(self, calibration: ina219.Calibration, max_current_a: float) -> None:
        info = self.request(mp.MonitorHello())
        self.clock_hz, self.version = info.clock_hz, info.version
        config = measurement_config(calibration, max_current_a)
        # Set before the request: the unit samples from CONFIGURE on, and the reader thread may
        # decode a sample before this thread sees the reply.
        self.calibration, self.decoder = calibration, PowerDecoder(calibration)
        configured = self.request(mp.Configure(config.register, calibration.register))
        if (configured.config, configured.calibration) != (config.register, calibration.register):
            raise MonitorError(f"{self.name}: the unit holds config {configured.config:#06x}, calibration "
                               f"{configured.calibration} instead of {config.register:#06x}, {calibration.register}")
        self.conversion_ticks = configured.conversion_ticks
        self._write_trace({"unit": info.unit_id, "version": "1.1" if info.version == mp.VERSION_1_1 else "1",
                           "clock_hz": self.clock_hz, "conversion_ticks": self.conversion_ticks,
                           "config": configured.config, "calibration": configured.calibration})
        log.info("%s: unit %s, %d Hz, conversions of %d ticks", self.name, info.unit_id, self.clock_hz,
                 self.conversion_ticks)

    def flush(self, windows: int, timeout: float = REQUEST_TIMEOUT_S) -> tuple[list[Edge], list[PowerSample]]:
        """Everything since the last flush, once at least `windows` busy windows are in, then take it.

        Edges travel to the unit on their own wire and can trail the device's answer, so
        the flush is repeated until that many windows are in, or `timeout` has passed; the
        caller checks how many came (hil/run/metering.py matches them to answers)."""
        deadline = time.monotonic() + timeout
        while True:
            self.request(mp.Flush(), timeout=max(0.1, deadline - time.monotonic()))
            with self._lock:
                edges_so_far = list(self.edges)  # counted outside the lock, so the reader thread is not held up
            if len(busy_windows(edges_so_far)) >= windows or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        with self._lock:  # edges only ever get appended, so these hold at least the windows counted
            edges, samples = self.edges, self.samples
            self.edges, self.samples = [], []
        self._write_trace(None)
        if self.trace_failure is not None:
            raise ResultsUnwritable(str(self.trace_failure))
        # A flush stands for "now", and an emulated unit takes that as one conversion after the
        # last edge; leaving the board idle that long keeps every later edge after it.
        time.sleep(2 * self.conversion_ticks / self.clock_hz)
        return edges, samples

    def close(self) -> None:
        self._listener.stop()
        self.channel.close()
        try:
            self._trace.close()
        except OSError:
            pass  # what it still held could not be written: trace_failure says so, or the flush before did


class HostReadLink:
    """A unit the host reads itself (linux-ina219, ppk2): its own threads append edges and samples and set
    `problem` when the unit fails; the metering reads it as it reads a MonitorLink."""

    FLUSH_TIMEOUT_S = 5.0
    pins_sampled = False  # True for a unit that reads the pins off its samples (see hil/run/metering.py)
    settle_ticks = 0  # how far past the last window's fall its samples must reach before a flush returns
    fix = "check its wiring and power"  # what the flush's error tells the user to do

    def __init__(self, name: str, trace_path: Path):
        self.name = name
        self.problem: str | None = None
        self.trace_path = trace_path
        self.trace_failure: ResultsUnwritable | None = None
        self.edges: list[Edge] = []
        self.samples: list[PowerSample] = []
        self._lock = threading.Lock()

    def _on_disk(self, write) -> None:
        """Write to the trace, as MonitorLink's: after a disk error it stops, the readings still count."""
        if self.trace_failure is not None:
            return
        try:
            write()
        except OSError as error:
            problem = results.disk_problem(error)
            if problem is None:
                raise
            self.trace_failure = results.unwritable(self.trace_path, problem)

    def _flush_files(self) -> None:
        """Push what the trace holds to disk (at every flush)."""

    def flush(self, windows: int, timeout: float = FLUSH_TIMEOUT_S) -> tuple[list[Edge], list[PowerSample]]:
        """Everything since the last flush, once `windows` busy windows are in and samples reach
        `settle_ticks` past the last of them (or `timeout` has passed: the caller counts what came)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.problem is not None:
                raise MonitorError(f"{self.name}: {self.problem}; {self.fix}")
            with self._lock:
                edges, covered = list(self.edges), self.samples[-1].end if self.samples else None
            found = busy_windows(edges)
            if (len(found) >= windows and (not found or covered is not None
                                           and covered >= found[-1].fall + self.settle_ticks)
                    or time.monotonic() > deadline):
                break
            time.sleep(0.01)
        with self._lock:
            edges, samples = self.edges, self.samples
            self.edges, self.samples = [], []
        self._flush_files()
        if self.trace_failure is not None:
            raise ResultsUnwritable(str(self.trace_failure))
        return edges, samples


class Monitor(ABC):
    """A board's measurement unit: started with the board, stopped with it. `start()` gives the link the
    metering reads (hil/run/metering.py): its flush(windows), clock_hz, conversion_ticks and
    pins_sampled, alike for every kind."""

    def __init__(self, slot: str, traces_dir: Path):
        self.slot = slot
        self.traces_dir = Path(traces_dir)
        self.link = None  # the started unit's link

    @abstractmethod
    def start(self): ...

    def stop(self) -> None:
        if self.link is not None:
            self.link.close()
            self.link = None

    @property
    def trace_failure(self) -> ResultsUnwritable | None:
        """The results disk error that stopped this unit's trace, if one did."""
        return self.link.trace_failure if self.link is not None else None


class Ina219Monitor(Monitor):
    """A unit whose INA219 the host calibrates from the lab's shunt and maximum current."""

    def __init__(self, slot: str, shunt_ohms: float, max_current_a: float, traces_dir: Path):
        super().__init__(slot, traces_dir)
        self.max_current_a = max_current_a
        self.calibration = ina219.Calibration.for_range(shunt_ohms, max_current_a)


class ProtocolMonitor(Ina219Monitor):
    """A unit speaking monitor protocol v1.1 or v1 on a serial port (the physical one, the emulated one)."""

    link: MonitorLink | None

    @abstractmethod
    def _open_port(self) -> serial.SerialBase: ...

    def start(self) -> MonitorLink:
        self.traces_dir.mkdir(parents=True, exist_ok=True)
        self.link = MonitorLink(self._open_port(), f"{self.slot} monitor", self.traces_dir / f"{self.slot}.jsonl")
        self.link.configure(self.calibration, self.max_current_a)
        return self.link
