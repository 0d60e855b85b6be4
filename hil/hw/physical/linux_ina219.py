"""A measurement unit made of a Linux host's own I2C and GPIO (labs.yaml: monitor kind `linux-ina219`).

An INA219 on the host's I2C bus (smbus2) sits in the DUT's supply; the DUT's busy and exit pins go to
two GPIO lines of a gpiochip (libgpiod v2, `gpiod` 2.x), whose kernel stamps every edge on
CLOCK_MONOTONIC. Samples are timed on the same clock: a thread polls the chip's CNVR bit and stamps
each conversion's end by the chip's period, kept between the last poll that found it clear and the
first that found it set (see _sample). Each sample starts where the previous one ended, so samples
tile time as hil/hw/measurement.py needs; a missed conversion leaves a gap, and the windows it touches
get no energy rather than a wrong one. Ticks are nanoseconds (clock_hz 1e9). The chip gets the serial
unit's configuration (hil/hw/monitor.py: measurement_config) but for 16-sample averaging (8.51 ms
conversions), with the lab's calibration (hil/hw/ina219.py). docs/measurement.md has the wiring.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from hil.hw import ina219
from hil.hw.measurement import PIN_BUSY, PIN_EXIT, Edge, PowerSample
from hil.hw.monitor import HostReadLink, Ina219Monitor, MonitorError, measurement_config
from hil.store import results

CLOCK_HZ = 1_000_000_000  # CLOCK_MONOTONIC nanoseconds
POLLS_PER_CONVERSION = 16  # CNVR polls per conversion: the stamp's error is half a poll plus one I2C read
# 16 shunt samples averaged: 8.51 ms conversions (SBOS448G §8.6.2.1). The serial unit's 2.13 ms ones would be
# missed whenever another thread of the run holds Python's GIL for its 5 ms switch interval.
SHUNT_ADC_AVERAGE_16 = 0b1100
TRIGGERED_SHUNT_BUS = 0b011  # one shunt+bus conversion, so POWER has a bus voltage (SBOS448G §8.6.2.1)


@dataclass(frozen=True)
class LinuxIna219Wiring:
    """Where the unit's parts are on this host (labs.yaml: boards[i].monitor, docs/labs.md)."""

    i2c_bus: int | str  # the bus number N of /dev/i2c-N, or the device's path
    address: int  # the INA219's 7-bit address (0x40..0x4F)
    gpio_chip: str  # /dev/gpiochipN
    busy_line: int  # line offsets on that chip
    exit_line: int


def _word(data: list[int]) -> int:
    """INA219 registers are big-endian on the wire (SMBus words are little-endian: see ina219.swap16)."""
    return data[0] << 8 | data[1]


class LinuxIna219Link(HostReadLink):
    """What the metering reads (hil/run/metering.py), as MonitorLink offers it: flush, clock, conversion."""

    def __init__(self, name: str, wiring: LinuxIna219Wiring, calibration: ina219.Calibration, max_current_a: float,
                 trace_path: Path):
        try:  # imported here: a lab without this kind of unit does not need them
            import gpiod
            import smbus2
            from gpiod.line import Edge as LineEdge
        except ImportError as error:
            raise MonitorError(f"{name}: a linux-ina219 unit needs the {error.name} package; install hil "
                               "with its dependencies") from None

        super().__init__(name, trace_path)
        self.wiring, self.calibration = wiring, calibration
        self.clock_hz = CLOCK_HZ  # and pins_sampled stays False: the kernel stamps each edge as it happens
        self._stopping = threading.Event()
        self._pins = {wiring.busy_line: PIN_BUSY, wiring.exit_line: PIN_EXIT}
        try:
            self._bus = smbus2.SMBus(wiring.i2c_bus)
        except OSError as error:
            raise MonitorError(f"{name}: cannot open I2C bus {wiring.i2c_bus} ({error}); check i2c_bus and that "
                               "the i2c-dev module is loaded") from None
        config = dataclasses.replace(measurement_config(calibration, max_current_a), sadc=SHUNT_ADC_AVERAGE_16)
        try:
            self._write(ina219.CALIBRATION, calibration.register)
            self._write(ina219.CONFIG, (config.register & ~0x7) | TRIGGERED_SHUNT_BUS)
            self._wait_ready(time.monotonic() + 1.0)
            self._write(ina219.CONFIG, config.register)
            held = self._read(ina219.CONFIG), self._read(ina219.CALIBRATION)
        except OSError as error:
            self._bus.close()
            raise MonitorError(f"{name}: no INA219 answers at {wiring.address:#04x} on I2C bus {wiring.i2c_bus} "
                               f"({error}); check address and wiring") from None
        if held != (config.register, calibration.register):
            self._bus.close()
            raise MonitorError(f"{name}: the INA219 holds config {held[0]:#06x}, calibration {held[1]} instead of "
                               f"{config.register:#06x}, {calibration.register}; check the address")
        self.conversion_ticks = round(config.conversion_time_s * CLOCK_HZ)
        try:
            self._request = gpiod.request_lines(wiring.gpio_chip, consumer="hil", config={
                (wiring.busy_line, wiring.exit_line): gpiod.LineSettings(edge_detection=LineEdge.BOTH)})
        except (OSError, ValueError) as error:
            self._bus.close()
            raise MonitorError(f"{name}: cannot request lines {wiring.busy_line}, {wiring.exit_line} of "
                               f"{wiring.gpio_chip} ({error}); check gpio_chip and the line offsets") from None
        with results.on_disk(trace_path):
            self._trace = open(trace_path, "a", encoding="utf-8")
        self._threads = [threading.Thread(target=self._sample, name=f"{name} samples", daemon=True),
                         threading.Thread(target=self._watch_pins, name=f"{name} pins", daemon=True)]
        for thread in self._threads:
            thread.start()

    def _read(self, register: int) -> int:
        return _word(self._bus.read_i2c_block_data(self.wiring.address, register, 2))

    def _write(self, register: int, value: int) -> None:
        self._bus.write_i2c_block_data(self.wiring.address, register, [value >> 8 & 0xFF, value & 0xFF])

    def _wait_ready(self, deadline: float) -> None:
        while not self._read(ina219.BUS) & ina219.CNVR:
            if time.monotonic() > deadline:
                raise OSError("the first conversion never became ready")
            time.sleep(0.001)

    def _sample(self) -> None:
        """Poll CNVR; read each conversion once (reading POWER clears CNVR, SBOS448G §8.6.3.2).

        A conversion ended after the last poll that found CNVR clear and before the first that found it
        set. The chip converts back to back, so its ends are the last end plus one conversion, kept
        inside that interval: a poll held up (the GIL, the scheduler) widens the interval but does not
        move the stamp, and every tight one corrects the chip's drift. A sample is kept only when it is
        surely one conversion stamped well: from the last clear poll to the end of the reads less than a
        conversion passed (else the next conversion may have ended, and been read, meanwhile), and its end
        is the chip's period after the last one or bracketed within two polls. Otherwise it is dropped and
        leaves a gap, so the windows it touches go unmetered, never metered wrong."""
        period = self.conversion_ticks
        poll_s = period / CLOCK_HZ / POLLS_PER_CONVERSION
        bracket = 2 * period // POLLS_PER_CONVERSION
        last_end: int | None = None
        clear_at = time.monotonic_ns()
        try:
            while not self._stopping.is_set():
                bus = self._read(ina219.BUS)
                seen_at = time.monotonic_ns()
                if not bus & ina219.CNVR:
                    clear_at = seen_at
                    time.sleep(poll_s)
                    continue
                shunt, power, current = (self._read(r) for r in (ina219.SHUNT, ina219.POWER, ina219.CURRENT))
                read_at = time.monotonic_ns()
                contiguous = last_end is not None and seen_at - last_end < 1.5 * period
                predicted = last_end + period if contiguous else seen_at
                end = min(max(predicted, clear_at), seen_at)
                one_conversion = read_at - clear_at < period
                if one_conversion and (contiguous or seen_at - clear_at <= bracket):
                    # Contiguous unless a conversion was missed (then the gap stays, and its windows go unmetered).
                    start = last_end if contiguous else end - period
                    registers = ina219.Registers(0, shunt, bus, power, current, self.calibration.register)
                    watts = ina219.decode(registers, self.calibration.shunt_ohms).power_w
                    with self._lock:
                        self.samples.append(PowerSample(start, end, watts))
                    self._write_trace({"sample": [start, end], "registers": [shunt, bus, power, current],
                                       "power_w": watts})
                    last_end = end
                else:
                    last_end = None
                    self._write_trace({"dropped": [clear_at, seen_at, read_at]})
                clear_at = read_at  # the reads cleared CNVR, and the next conversion ends after them
        except OSError as error:
            self.problem = f"the INA219 stopped answering on I2C bus {self.wiring.i2c_bus} ({error})"

    def _watch_pins(self) -> None:
        from gpiod import EdgeEvent

        try:
            while not self._stopping.is_set():
                if not self._request.wait_edge_events(0.1):
                    continue
                for event in self._request.read_edge_events():
                    edge = Edge(self._pins[event.line_offset],
                                int(event.event_type == EdgeEvent.Type.RISING_EDGE), event.timestamp_ns)
                    with self._lock:
                        self.edges.append(edge)
                    self._write_trace({"edge": [edge.pin, edge.level, edge.at]})
        except OSError as error:
            self.problem = f"the GPIO lines of {self.wiring.gpio_chip} failed ({error})"

    def _write_trace(self, entry: dict) -> None:
        def write() -> None:
            with self._lock:  # two threads write it
                self._trace.write(json.dumps(entry) + "\n")
        self._on_disk(write)

    def _flush_files(self) -> None:
        self._on_disk(self._trace.flush)

    def close(self) -> None:
        self._stopping.set()
        for thread in self._threads:
            thread.join(timeout=1.0)
        for part in (self._request.release, self._bus.close, self._trace.close):
            try:
                part()
            except OSError:
                pass  # going away anyway; the problem, if any, is already recorded


class LinuxIna219Monitor(Ina219Monitor):
    """An INA219 on this host's I2C bus and the DUT's pins on its GPIO lines."""

    def __init__(self, slot: str, shunt_ohms: float, max_current_a: float, traces_dir: Path,
                 wiring: LinuxIna219Wiring):
        super().__init__(slot, shunt_ohms, max_current_a, traces_dir)
        self.wiring = wiring

    def start(self) -> LinuxIna219Link:
        self.traces_dir.mkdir(parents=True, exist_ok=True)
        self.link = LinuxIna219Link(f"{self.slot} monitor", self.wiring, self.calibration, self.max_current_a,
                                    self.traces_dir / f"{self.slot}.jsonl")
        return self.link
