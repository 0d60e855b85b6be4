"""The Nucleo-L432KC stand-in itself (tests/support/benches.py): its MCU boots what the probe's flash
holds when pyOCD's reset lets the chip run, bytes the host sent before that wait in the USB serial port
and reach the MCU exactly once, and a later flash reboots it with the new bytes."""

import shutil
import time

import pytest

from hil.firmware import build as firmware
from hil.hw import protocol
from hil.hw.channel import open_port
from hil.hw.flasher import flash_image
from hil.hw.kinds import BOARD_KINDS

from tests.support.benches import FLASH, KIND

pytestmark = pytest.mark.skipif(shutil.which("qemu-system-arm") is None, reason="qemu-system-arm not installed")
TARGET = BOARD_KINDS[KIND].pyocd_target


def frames_until_quiet(port, first_timeout: float, quiet: float = 0.5) -> list[protocol.Frame]:
    """Every frame that arrives until the port has been quiet for `quiet` s (`first_timeout` for the first)."""
    decoder, frames = protocol.FrameDecoder(), []
    deadline = time.monotonic() + first_timeout
    while time.monotonic() < deadline:
        data = port.read(port.in_waiting or 1)
        if data:
            frames += [e for e in decoder.feed(data) if isinstance(e, protocol.Frame)]
            deadline = time.monotonic() + quiet
    return frames


def flash(board, model: str) -> firmware.FirmwareManifest:
    manifest = firmware.prebuilt(KIND, model)
    flash_image(board.probe.address, TARGET, manifest.bin, manifest.image_sha256, base_address=FLASH.origin)
    return manifest


def test_a_hello_sent_before_the_boot_is_answered_once_and_a_reflash_reboots(tmp_path, nucleo, monkeypatch):
    monkeypatch.setenv("HIL_LOCK_DIR", str(tmp_path / "locks"))
    board = nucleo("STLINK-0401")
    port = open_port(board.port, timeout=0.05)
    try:
        port.write(protocol.encode_message(protocol.Hello(), seq=7))  # the chip is erased: nothing runs yet
        assert frames_until_quiet(port, first_timeout=0.5) == [] and board.boots == 0

        digits = flash(board, "qute-digits")  # pyOCD's reset lets the chip run: the MCU boots and reads HELLO
        (info,) = frames_until_quiet(port, first_timeout=10)  # one answer: the HELLO was neither lost nor doubled
        assert (info.type, info.seq) == (protocol.MessageType.INFO, 7) and board.boots == 1
        assert protocol.Info.from_payload(info.payload).firmware_sha256.hex() == digits.image_sha256

        mnist1d = flash(board, "qute-mnist1d")  # a later reset boots the flash as it is now
        port.write(protocol.encode_message(protocol.Hello(), seq=8))
        (info,) = frames_until_quiet(port, first_timeout=10)
        assert (info.type, info.seq) == (protocol.MessageType.INFO, 8) and board.boots == 2
        assert protocol.Info.from_payload(info.payload).firmware_sha256.hex() == mnist1d.image_sha256
    finally:
        port.close()
    assert board.probe.releases == 2
