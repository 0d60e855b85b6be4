"""Metering without a board: the host's side of a measurement unit on a real pty played by the
test (garbage, a window too many), busy-window energy, the matching of windows to answers by
the device's window ordinal, and the verdict's count of unmeasured answers. The same on real
QEMU boards and the emulated unit is tests/emulated/test_measurement.py."""

import os
import select
import threading

import pytest

from hil.hw import protocol
from hil.hw.measurement import BusyWindow, Edge, PowerSample, busy_windows, window_energies
from hil.run.metering import Answer, Meter, Unmatched, align, measure_inferences
from hil.hw.monitor import MonitorError, MonitorLink
from hil.hw import monitor_protocol as mp
from hil.run.records import Record, RecordJournal, read_measurements

PASS, INFRASTRUCTURE = 0, 2
CLOCK_HZ = 25_000_000
CONVERSION_TICKS = 53_250  # 2.13 ms: 12 bits averaged over 4 (docs/monitor.md)


@pytest.fixture
def unit_pty():
    """A pty whose far end this test plays as a measurement unit."""
    import serial
    import tty

    controller, device = os.openpty()
    tty.setraw(device)
    port = serial.Serial(os.ttyname(device), timeout=0.1)
    yield controller, port
    port.close()
    os.close(controller)
    os.close(device)


def test_a_unit_that_sends_garbage_is_a_clear_error(tmp_path, unit_pty):
    controller, port = unit_pty
    link = MonitorLink(port, "bench monitor", tmp_path / "trace.jsonl")
    try:
        os.write(controller, b"\x13\x37garbage\x00" + protocol.encode_frame(0x77, 1, b"??"))
        with pytest.raises(MonitorError, match=r"bench monitor: the measurement unit did not answer MonitorHello "
                                               r"within 1 s \(garbled data from the unit"):
            link.request(mp.MonitorHello(), timeout=1)
    finally:
        link.close()


def test_energy_of_a_window_from_samples_that_straddle_it():
    # Idle 1 W, 3 W while busy from t=25 to t=75; samples of 20 ticks; clock 100 Hz.
    samples = [PowerSample(t, t + 20, 1 + 2 * max(0, min(t + 20, 75) - max(t, 25)) / 20) for t in range(0, 120, 20)]
    (window,) = busy_windows([Edge(0, 1, 25), Edge(0, 0, 75)])
    assert window == BusyWindow(25, 75, False)
    (energy,) = window_energies([window], samples, idle_w=1.0, clock_hz=100)
    assert energy == pytest.approx(2.0 * 50 / 100)
    (uncovered,) = window_energies([window], samples[:3], idle_w=1.0, clock_hz=100)
    assert uncovered is None  # samples end before the window does: no figure rather than a wrong one


def test_windows_are_matched_by_ordinal_and_unclaimed_ones_left_alone():
    # Since the last flush (device count 10) the device ran windows 11..15; the answers of 12 and
    # 14 were lost and retried, so the answers that came carry 11, 13, 15.
    assert align(10, [11, 13, 15], found=5) == [0, 2, 4]
    assert align(0, [1, 2, 3], found=3) == [0, 1, 2]


@pytest.mark.parametrize("ordinals, found, says", [
    ([11, 13, 15], 4, "reported 4 busy windows where the device ran 5"),  # the unit missed one
    ([11, 13, 15], 6, "reported 6 busy windows where the device ran 5"),  # or saw one too many
    ([11, 12, 2], 5, "restarted (its window count went back from 12 to 2)"),
    ([10, 11], 2, "restarted (its window count went back from 10 to 10)"),
])
def test_windows_that_cannot_be_told_apart_are_not_matched(ordinals, found, says):
    unmatched = align(10, ordinals, found)
    assert isinstance(unmatched, Unmatched) and says in unmatched.reason
    assert unmatched.restarted == ("restarted" in says)


class FakeUnit:
    """The far end of a real pty, played as a measurement unit: it sends the edges it is given
    and answers FLUSH."""

    def __init__(self, controller: int):
        self.controller = controller
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def edges(self, windows: list[tuple[int, int]]) -> None:
        for seq, (rise, fall) in enumerate(windows):
            for level, at in ((1, rise), (0, fall)):
                os.write(self.controller, protocol.encode_message(mp.MonitorEdge(0, level, at), 2 * seq + level))

    def _serve(self) -> None:
        decoder = protocol.FrameDecoder()
        while not self._stop.is_set():
            if select.select([self.controller], [], [], 0.05)[0]:
                for frame in decoder.feed(os.read(self.controller, 4096)):
                    os.write(self.controller, protocol.encode_message(mp.Flushed(0), frame.seq))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def test_a_unit_that_reports_a_window_too_many_leaves_the_answers_unmeasured_with_the_reason(tmp_path, unit_pty):
    controller, port = unit_pty
    link = MonitorLink(port, "bench monitor", tmp_path / "trace.jsonl")
    link.clock_hz, link.conversion_ticks = CLOCK_HZ, CONVERSION_TICKS  # as CONFIGURE would set them
    unit = FakeUnit(controller)
    records = [Record("bench", "qute-digits", "clean", i, 0, 32768, False, 0, 0, 1000, [0], [[0]], 1) for i in range(3)]
    try:
        # The device ran windows 1..3; the unit reports a glitch on the capture input as a fourth.
        unit.edges([(100, 1100), (5000, 6000), (7000, 7001), (9000, 10000)])
        meter = Meter(link, CLOCK_HZ, base=0)
        with RecordJournal(tmp_path, "measurements.jsonl") as journal:
            failures = measure_inferences("bench", meter, [Answer(r, r.index + 1) for r in records], journal)
    finally:
        unit.stop()
        link.close()
    (failure,) = failures
    assert failure.stage == "monitor" and "reported 4 busy windows where the device ran 3" in failure.reason
    rows = read_measurements(tmp_path)
    assert [(m.index, m.method, m.window) for m in rows] == [(0, "unmeasured", 1), (1, "unmeasured", 2),
                                                              (2, "unmeasured", 3)]
    assert all("which is whose is unknown" in m.reason and m.ticks is None for m in rows)
    assert meter.base == 3  # the next windows are the device's 4, 5, …


def test_the_verdict_counts_a_boards_unmeasured_answers_over_all_its_test_sets():
    from hil.run.assess import BoardSetSummary
    from hil.run.verdict import decide

    def summary(slot, testset, unmeasured, reasons=None):
        return BoardSetSummary(slot, "qute-digits", testset, "clean", 10, 10, 1.0, 0.5, None, 10, 0, 1.0, 2.0,
                               unmeasured, reasons or {})

    measured = [summary("a", "clean", 0), summary("a", "ood", 0), summary("physical", "clean", None)]
    assert decide(measured, [], []).exit_code == PASS  # a board without a unit is not counted
    verdict = decide([summary("a", "clean", 0), summary("a", "ood", 3, {"the unit missed one": 2, "gone": 1})], [], [])
    assert (verdict.status, verdict.exit_code) == ("error", INFRASTRUCTURE)
    assert verdict.reasons == ["a: 3 of 20 answered samples unmeasured (2: the unit missed one; 1: gone); "
                               "`hil run --resume` measures them"]


@pytest.mark.parametrize("pins_sampled, expected", [(True, ["window", "window", "unmeasured"]),
                                                    (False, ["unmeasured", "window", "unmeasured"])])
def test_an_exit_pulse_a_sampling_unit_cannot_see_is_no_disagreement(tmp_path, unit_pty, pins_sampled, expected):
    controller, port = unit_pty
    link = MonitorLink(port, "bench monitor", tmp_path / "trace.jsonl")
    link.clock_hz, link.conversion_ticks, link.pins_sampled = CLOCK_HZ, CONVERSION_TICKS, pins_sampled
    unit = FakeUnit(controller)
    # 0: exited, no exit pin seen (a PPK2 misses the pulse); 1: exited, the pin high to the end;
    # 2: exited, yet the pin rose and fell before the end: a disagreement whatever the unit.
    pulses = [None, (3000, 4000), (5500, 5600)]
    records = [Record("bench", "qute-digits", "clean", i, 0, 32768, True, 0, 0, 1000, [0], [[0]], 1) for i in range(3)]
    try:
        for seq, ((rise, fall), pulse) in enumerate(zip([(100, 1100), (2500, 4000), (5000, 6000)], pulses)):
            edges = [(0, 1, rise)] + ([] if pulse is None else [(1, 1, pulse[0]), (1, 0, pulse[1])]) + [(0, 0, fall)]
            for n, (pin, level, at) in enumerate(edges):
                os.write(controller, protocol.encode_message(mp.MonitorEdge(pin, level, at), 10 * seq + n))
        with RecordJournal(tmp_path, "measurements.jsonl") as journal:
            measure_inferences("bench", Meter(link, CLOCK_HZ, base=0), [Answer(r, r.index + 1) for r in records],
                               journal)
    finally:
        unit.stop()
        link.close()
    assert [m.method for m in read_measurements(tmp_path)] == expected
