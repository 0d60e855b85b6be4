"""Monitor protocol v1.1's batches: lossless against v1's per-sample frames, decoded to exactly the
per-sample figures, on a real pty into the host's MonitorLink. The emulated unit's own INA219
model (seeded noise) makes the conversions; the same seed gives the same registers in both versions."""

import os
import time

import numpy as np
import pytest

from hil.hw import ina219
from hil.hw import monitor_protocol as mp
from hil.hw import protocol
from hil.hw.channel import Framing
from hil.hw.emulated.monitor_unit import EmulatedUnit
from hil.hw.kinds import BOARD_KINDS
from hil.hw.monitor import MonitorLink, PowerDecoder, measurement_config

CLOCK_HZ = 25_000_000
PROFILE = BOARD_KINDS["mps2-an386"].power
CALIBRATION = ina219.Calibration.for_range(PROFILE.shunt_ohms, 0.04)


def _stream(version: int, windows: list[tuple[int, int]]) -> tuple[bytes, int]:
    """The bytes a unit of `version` sends for these busy windows (flushing at the end), and how
    many conversions it made."""
    framing = Framing("unit", mp.MonitorMessage)
    sent: list[bytes] = []
    conversions: list[object] = []

    def send(message, reply_seq=None):
        conversions.extend([message] if isinstance(message, mp.Sample) else [])
        sent.append(framing.encode(message, reply_seq)[1])

    unit = EmulatedUnit(PROFILE, CLOCK_HZ, None, 7, send, version)
    config = measurement_config(CALIBRATION, 0.04)
    unit.on_request(mp.Configure(config.register, CALIBRATION.register))
    for rise, fall in windows:
        unit.on_edge(protocol.Edge(0, 1, rise % (1 << 32)))
        unit.on_edge(protocol.Edge(0, 0, fall % (1 << 32)))
    unit.on_request(mp.Flush())
    return b"".join(sent), unit.sample_start


def _decoded(stream: bytes, end: int, tmp_path, pty_pair, name: str):
    """What the host's MonitorLink makes of a unit's bytes on a real pty, once it has decoded up to `end`."""
    controller, port = pty_pair
    link = MonitorLink(port, "bench monitor", tmp_path / f"{name}.jsonl")
    link.calibration, link.decoder = CALIBRATION, PowerDecoder(CALIBRATION)
    try:
        os.write(controller, stream)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (link.samples and link.samples[-1].end >= end):
            time.sleep(0.05)
        time.sleep(0.1)  # edges sent after the last conversion
        assert link.problem is None
        return list(link.edges), list(link.samples), link.trace_path
    finally:
        link.close()


_WINDOWS = [(1_000 + 900_000 * i, 1_000 + 900_000 * i + (400_000 if i % 3 else 2_000)) for i in range(60)]
_WINDOWS += [(80_000_000, 81_000_000)]  # after a long idle stretch


@pytest.fixture
def pty_pairs():
    """Make (controller fd, host port) pairs: a real pty whose far end the test plays as the unit."""
    import serial
    import tty

    opened = []

    def make():
        controller, device = os.openpty()
        tty.setraw(device)
        opened.append((controller, device, serial.Serial(os.ttyname(device), timeout=0.1)))
        return controller, opened[-1][2]

    yield make
    for controller, device, port in opened:
        port.close()
        os.close(controller)
        os.close(device)


def test_v1_1_batches_decode_to_exactly_the_edges_and_samples_of_v1(tmp_path, pty_pairs):
    v1, end_v1 = _stream(mp.VERSION_1, _WINDOWS)
    v11, end_v11 = _stream(mp.VERSION_1_1, _WINDOWS)
    assert end_v1 == end_v11
    edges_v1, samples_v1, _ = _decoded(v1, end_v1, tmp_path, pty_pairs(), "v1")
    edges_v11, samples_v11, trace = _decoded(v11, end_v11, tmp_path, pty_pairs(), "v11")
    assert len(samples_v1) > 1000 and len(edges_v1) == 2 * len(_WINDOWS)
    assert edges_v11 == edges_v1 and samples_v11 == samples_v1  # the same windows, the same floats
    assert len(v11) * 4 < len(v1)  # and far fewer bytes
    lines = trace.read_text().splitlines()
    assert any('"run"' in line for line in lines) and any('"samples"' in line for line in lines)


def test_batching_is_lossless_and_collapses_only_identical_registers():
    rng = np.random.default_rng(3)
    conversions, t = [], 0
    for _ in range(500):
        shunt = int(rng.choice([210, 210, 211]))
        conversions.append(mp.Conversion(t, t + 100, shunt, 6602 if t < 30_000 else 6610, shunt * 2, shunt * 5))
        t += 100 if rng.random() > 0.01 else 150  # a rare gap: a new batch
    conversions += [mp.Conversion(t + 100 * i, t + 100 * (i + 1), 5, 6602, 1, 2) for i in range(1000)]
    messages = mp.batch_conversions(conversions)
    assert any(isinstance(m, mp.SampleRun) and m.count == 1000 for m in messages)
    decoded = []
    for message in messages:  # through the wire format
        (frame,) = protocol.FrameDecoder().feed(protocol.encode_message(message, 1))
        parsed = mp.parse_monitor_message(frame)
        if isinstance(parsed, mp.SampleRun):
            assert parsed.count >= mp.RUN_MIN
            decoded += [mp.Conversion(parsed.start + i * parsed.ticks, parsed.start + (i + 1) * parsed.ticks,
                                      parsed.shunt, parsed.bus, parsed.power, parsed.current)
                        for i in range(parsed.count)]
        else:
            decoded += [mp.Conversion(parsed.start + i * parsed.ticks, parsed.start + (i + 1) * parsed.ticks,
                                      s, parsed.bus, p, c) for i, (s, p, c) in enumerate(parsed.registers.tolist())]
    assert decoded == conversions


def test_edges_batch_round_trips_and_splits_at_a_32_bit_gap():
    edges = [(i % 2, (i // 2) % 2, 10 * i) for i in range(120)] + [(0, 1, 1 << 40)]
    messages = mp.batch_edges(edges)
    assert len(messages) == 4  # 49 + 49 + 22, then the gap
    parsed = [mp.parse_monitor_message(protocol.Frame(m.TYPE, 0, m.to_payload())) for m in messages]
    assert [e for m in parsed for e in m.edges()] == edges


def test_a_batch_decodes_to_ina219_decode_value_for_value():
    decoder = PowerDecoder(CALIBRATION)
    power = np.random.default_rng(1).integers(0, 1 << 16, 5000, dtype=np.uint16)
    for bus in (6602, 6602 | ina219.OVF):
        expected = [ina219.decode(ina219.Registers(0, 0, bus, p, 0, CALIBRATION.register), PROFILE.shunt_ohms).power_w
                    for p in power.tolist()]
        assert decoder.power_w(power, bus) == expected


@pytest.mark.parametrize("payload, says", [
    (b"\x00" * 15, "count 0"),
    (b"\x00" * 14 + b"\x02" + b"\x00" * 6, "count 2, 1 records"),
    (b"\x00" * 16, "16 bytes"),
])
def test_a_malformed_samples_frame_is_refused(payload, says):
    with pytest.raises(protocol.ProtocolError, match=says):
        mp.Samples.from_payload(payload)


def test_a_unit_of_an_unknown_protocol_version_is_refused_by_name():
    payload = mp.MonitorInfo(mp.VERSION_1_1, CLOCK_HZ, "unit").to_payload()
    assert mp.MonitorInfo.from_payload(payload).version == mp.VERSION_1_1
    assert mp.MonitorInfo.from_payload(b"\x01" + payload[1:]).version == mp.VERSION_1  # v1 units still work
    with pytest.raises(protocol.ProtocolError, match="monitor INFO: version 3"):
        mp.MonitorInfo.from_payload(b"\x03" + payload[1:])
