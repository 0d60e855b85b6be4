"""The emulated-board launcher: nothing the firmware sends is lost, and QEMU never outlives us."""

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from hil.firmware import build as firmware
from hil.hw.emulated.qemu import QemuBoard
from hil.hw.kinds import BOARD_KINDS

pytestmark = pytest.mark.skipif(shutil.which("qemu-system-arm") is None, reason="qemu-system-arm not installed")
IMAGE = firmware.prebuilt("mps2-an386", "qute-mnist1d")


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is gone for our purposes
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split()[2] != "Z"


def wait_gone(pid: int, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not process_exists(pid):
            return True
        time.sleep(0.05)
    return False


def test_the_first_bytes_the_firmware_sends_arrive():
    # The firmware reports its pin levels first thing after reset; a launcher that opened
    # the ptys after letting the CPU run would miss them.
    with QemuBoard(BOARD_KINDS["mps2-an386"], IMAGE.elf) as board:
        edges = board.recorder.take(settle=0.3)
    assert [(e.pin, e.level) for e in edges[:2]] == [(0, 0), (1, 0)]


def test_stop_ends_qemu_and_a_reset_restarts_the_firmware():
    board = QemuBoard(BOARD_KINDS["mps2-an386"], IMAGE.elf).start()
    pid = board.pid
    board.recorder.take(settle=0.3)
    board.reset()
    assert [(e.pin, e.level) for e in board.recorder.take(settle=0.3)] == [(0, 0), (1, 0)]
    board.stop()
    assert wait_gone(pid)


def test_a_missing_image_is_a_clear_error(tmp_path):
    from hil.hw.emulated.qemu import EmulatorError

    with pytest.raises(EmulatorError, match="firmware image .* not found"):
        QemuBoard(BOARD_KINDS["mps2-an386"], tmp_path / "none.elf").start()


SCRIPT = textwrap.dedent(f"""
    import sys, time
    from pathlib import Path
    from hil.hw.emulated.qemu import QemuBoard
    from hil.hw.kinds import BOARD_KINDS
    with QemuBoard(BOARD_KINDS["mps2-an386"], Path({str(IMAGE.elf)!r})) as board:
        print(board.pid, flush=True)
        time.sleep(60)
""")


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=["ctrl-c", "sigterm", "sigkill"])
def test_qemu_dies_with_its_owner(how):
    owner = subprocess.Popen([sys.executable, "-c", SCRIPT], stdout=subprocess.PIPE, text=True)
    qemu_pid = int(owner.stdout.readline())
    assert process_exists(qemu_pid)
    owner.send_signal(how)
    owner.wait(timeout=10)
    assert wait_gone(qemu_pid), f"QEMU outlived its owner after {how.name}"


def test_the_emulated_unit_hears_the_pin_levels_of_reset(tmp_path):
    # The unit's process opens the wire after the firmware has written its reset-time levels onto it
    # (they wait in the pty, held open by the board): making its end raw must not discard them.
    from hil.hw.emulated.monitor import EmulatedMonitor

    kind = BOARD_KINDS["nucleo-l432kc"]
    with QemuBoard(kind, firmware.prebuilt(kind.name, "qute-mnist1d").elf, record_wire=False) as board:
        time.sleep(0.3)  # the firmware has long written them before the unit starts
        unit = EmulatedMonitor("l4-1", kind.name, kind.timer_hz, tmp_path, board.wire.port)
        try:
            edges, _ = unit.start().flush(windows=0)
        finally:
            unit.stop()
    assert [(e.pin, e.level) for e in edges[:2]] == [(0, 0), (1, 0)]
