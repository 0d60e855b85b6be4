"""hil.hw.flasher against hil.hw.emulated.probe: real, unmodified pyOCD flashing an emulated probe (target
cortex_m, RAM only) over its remote protocol.

Each flash runs pyOCD in a child process (as in production) that connects to an EmulatedProbe in this process;
the server's RAM, reset count and connection counts are what the tests check.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from hil.hw.children import child_env
from hil.errors import EXIT_INFRASTRUCTURE, BadInput
from hil.hw.locks import Lock
from hil.hw.flasher import FlashTimeout, ProbeError, ProbeNotFound, VerifyFailed, flash_image, probe_lock, select_probe
from hil.hw.emulated.probe import EmulatedProbe

PREBUILT = Path(__file__).resolve().parents[2] / "firmware/prebuilt/mps2-an386/qute-digits"
IMAGE = PREBUILT / "firmware.bin"
SHA256 = json.loads((PREBUILT / "manifest.json").read_text())["image_sha256"]


@pytest.fixture(autouse=True)
def lock_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("HIL_LOCK_DIR", str(tmp_path / "locks"))


@pytest.fixture
def server():
    with EmulatedProbe("ABC123", "cortex_m") as probe_server:
        yield probe_server


def one_line(error: Exception) -> str:
    text = str(error)
    assert "\n" not in text and text
    return text


def test_flash_writes_the_image_verifies_and_resets(server):
    image = IMAGE.read_bytes()
    report = flash_image(server.address, "cortex_m", IMAGE, SHA256, expect_served_id="ABC123")

    assert server.memory(0, len(image)) == image
    assert server.memory(len(image), 256) == bytes(256)  # nothing written past the image
    assert server.resets >= 1
    # The reset loaded SP and PC from the vector table that was just flashed.
    assert server.core.read_register(13) == int.from_bytes(image[0:4], "little")
    assert server.core.read_register(15) == int.from_bytes(image[4:8], "little") & ~1
    assert (report.probe, report.served_probe, report.target) == (server.address, "ABC123", "cortex_m")
    assert (report.bytes, report.base_address, report.verified, report.attempts) == (len(image), 0, True, 1)
    assert report.image_sha256 == SHA256 and report.reset_error is None
    assert json.loads(json.dumps(vars(report)))["image"] == "firmware.bin"


def test_an_unaligned_image_lands_byte_exact_at_its_base_address(server, tmp_path):
    # pyOCD writes the unaligned head and tail with 8- and 16-bit DRW transfers (byte lanes), the middle as words.
    image = tmp_path / "small.bin"
    image.write_bytes(bytes(range(0xA0, 0xAB)))  # 11 bytes
    report = flash_image(server.address, "cortex_m", image, hashlib.sha256(image.read_bytes()).hexdigest(),
                         base_address=0x2000_0001)

    assert server.memory(0x2000_0000, 16) == b"\0" + image.read_bytes() + b"\0" * 4
    assert (report.base_address, report.bytes, report.verified) == (0x2000_0001, 11, True)


def test_sha256_mismatch_is_refused_before_the_probe_is_opened(server, tmp_path):
    tampered = tmp_path / "firmware.bin"
    data = bytearray(IMAGE.read_bytes())
    data[100] ^= 0xFF
    tampered.write_bytes(data)

    with pytest.raises(BadInput, match=r"firmware\.bin: sha256 .* does not match the manifest") as caught:
        flash_image(server.address, "cortex_m", tampered, SHA256)

    one_line(caught.value)
    assert server.connections == 0 and server.memory_writes == 0


def test_a_corrupted_write_is_caught_by_the_read_back_and_retried_once():
    with EmulatedProbe("ABC123", "cortex_m", corrupt_program_at=0x1234) as server:
        with pytest.raises(VerifyFailed) as caught:
            flash_image(server.address, "cortex_m", IMAGE, SHA256, retries=1)
        assert server.connections == 2  # one retry, then the failure is reported

    message = one_line(caught.value)
    assert message.startswith(f"probe {server.address}: read-back verify failed at 0x00001234 "
                              "after flashing firmware.bin; ")
    assert caught.value.exit_code == EXIT_INFRASTRUCTURE


def test_probes_are_matched_by_exact_unique_id():
    probes = [SimpleNamespace(unique_id="ABC123"), SimpleNamespace(unique_id="0240000034544e45ABC1")]

    assert select_probe(probes, "ABC123") is probes[0]
    for asked in ("ABC", "abc123", "ABC1234", ""):  # substrings, case and prefixes do not match
        with pytest.raises(ProbeNotFound, match="probes present: 0240000034544e45ABC1, ABC123"):
            select_probe(probes, asked)
    with pytest.raises(ProbeNotFound, match="matches 2 probes"):
        select_probe([*probes, SimpleNamespace(unique_id="ABC123")], "ABC123")


def test_a_local_probe_that_is_not_connected_is_reported():
    # Runs pyOCD's real USB enumeration in the child; no probe here has the unique id "ABC".
    with pytest.raises(ProbeNotFound, match=r"^probe ABC: is not connected \(probes present: ") as caught:
        flash_image("ABC", "cortex_m", IMAGE, SHA256)
    one_line(caught.value)


def test_a_remote_probe_serving_another_board_is_refused(server):
    with pytest.raises(ProbeNotFound, match="serves probe 'ABC123', not 'XYZ789'"):
        flash_image(server.address, "cortex_m", IMAGE, SHA256, expect_served_id="XYZ789")
    assert server.memory_writes == 0


def test_an_unknown_target_is_one_line_naming_the_probe(server):
    with pytest.raises(ProbeError, match=rf"^probe {server.address}: pyOCD does not know target 'nosuchchip'") as c:
        flash_image(server.address, "nosuchchip", IMAGE, SHA256)
    one_line(c.value)
    assert server.memory_writes == 0


def test_a_target_that_does_not_answer_is_reported(server):
    server.responding = False
    with pytest.raises(ProbeError, match=rf"^probe {server.address}: target not detected") as caught:
        flash_image(server.address, "cortex_m", IMAGE, SHA256)
    one_line(caught.value)


def test_two_flashes_of_one_probe_are_serialised(server):
    results: list[object] = []

    def flash() -> None:
        try:
            results.append(flash_image(server.address, "cortex_m", IMAGE, SHA256))
        except Exception as error:  # noqa: BLE001 - reported by the assertion below
            results.append(error)

    threads = [threading.Thread(target=flash) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert [getattr(r, "verified", r) for r in results] == [True, True]
    assert server.connections == 2 and server.max_concurrent == 1
    assert server.memory(0, IMAGE.stat().st_size) == IMAGE.read_bytes()


def test_waiting_for_a_busy_probe_gives_up_at_the_timeout(server):
    started = time.monotonic()
    busy = rf"^probe {server.address}: still being flashed by pid \d+"
    with probe_lock(server.address, started), pytest.raises(ProbeError, match=busy):  # another flash holds it
        flash_image(server.address, "cortex_m", IMAGE, SHA256, timeout_s=0.3)
    assert time.monotonic() - started < 2
    assert server.connections == 0


def test_a_hung_probe_is_killed_at_the_timeout(server):
    server.stalled = True  # the server reads requests and never answers
    started = time.monotonic()
    expected = rf"^probe {server.address}: flashing firmware\.bin did not finish within 4 s \(stopped it\)"
    with pytest.raises(FlashTimeout, match=expected):
        flash_image(server.address, "cortex_m", IMAGE, SHA256, timeout_s=4)
    assert time.monotonic() - started < 6


FLASH = """
import sys
from hil.hw.flasher import flash_image
flash_image(sys.argv[1], "cortex_m", sys.argv[2], sys.argv[3], timeout_s=120)
"""


def flashers(parent: int) -> list[int]:
    """The `hil.hw.flasher --child` processes that `parent` started."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            command = (proc / "cmdline").read_bytes().split(b"\0")
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == parent and b"hil.hw.flasher" in command and b"--child" in command:
            found.append(int(proc.name))
    return found


def running(pid: int) -> bool:
    try:
        return (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]) != "Z"
    except OSError:
        return False


def test_a_killed_orchestrator_leaves_no_flasher_and_no_unlocked_probe_under_one(server):
    server.latency_s = 0.05  # a slow probe: this flash would take some 12 s
    parent = subprocess.Popen([sys.executable, "-c", FLASH, server.address, str(IMAGE), SHA256], env=child_env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    flasher = None
    try:
        deadline = time.monotonic() + 60
        while server.memory_writes == 0:  # flashing has begun
            assert parent.poll() is None and time.monotonic() < deadline, "the flash did not start"
            time.sleep(0.05)
        (flasher,) = flashers(parent.pid)
        os.kill(flasher, signal.SIGSTOP)  # hold the flasher mid-flash, so what follows does not race it
        parent.kill()  # SIGKILL: the orchestrator runs no cleanup at all
        parent.wait()
        # The flasher still lives, so the probe is still locked: nobody else may flash it now.
        lock = Lock("flash-" + server.address)
        assert lock.try_acquire("test") == f"pid {parent.pid}"
        os.kill(flasher, signal.SIGCONT)  # it goes on, and finds its parent gone
        gone_by = time.monotonic() + 3
        while running(flasher):
            assert time.monotonic() < gone_by, "the flasher outlived its orchestrator"
            time.sleep(0.02)
    finally:
        for pid in [parent.pid] + ([flasher] if flasher and running(flasher) else []):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        parent.wait()
    writes = server.memory_writes
    time.sleep(0.3)
    assert server.memory_writes == writes, "the probe was written to after the flasher was gone"
    assert lock.try_acquire("test") is None  # the probe is free once the flasher is gone
    lock.release()


PYOCD_SESSION = """
import json, sys, tempfile
from pyocd.core.session import Session
from pyocd.probe.tcp_client_probe import TCPClientProbe

options = {"target_override": "cortex_m", "project_dir": tempfile.mkdtemp(), "no_config": True}
with Session(TCPClientProbe(sys.argv[1]), options=options) as session:
    core = session.target.selected_core
    core.halt()
    core.write_core_register("r0", 0x12345678)
    core.write_core_register("pc", 0x2000_0100)
    print(json.dumps({"core": core.name, "fpu": core.has_fpu, "halted": core.is_halted(),
                      "r0": core.read_core_register("r0"), "pc": core.read_core_register("pc")}))
"""


def test_pyocd_identifies_halts_and_drives_the_core_registers(server):
    # A Session of its own (in a child: Session chdirs), beyond what flashing needs.
    out = subprocess.run([sys.executable, "-c", PYOCD_SESSION, f"127.0.0.1:{server.port}"], capture_output=True,
                         text=True, timeout=60, check=True).stdout
    assert json.loads(out) == {"core": "Cortex-M4", "fpu": True, "halted": True, "r0": 0x12345678, "pc": 0x2000_0100}
    assert server.core.read_register(0) == 0x12345678
    assert not server.core.halted  # the session resumed the core when it closed (resume_on_disconnect)


def test_the_server_memory_interface_requests():
    # What pyOCD uses when a server hands out a memory-interface handle (off by default, see probe_server).
    from pyocd.coresight.ap import APv1Address
    from pyocd.probe.tcp_client_probe import TCPClientProbe

    with EmulatedProbe("ABC123", "cortex_m", memory_interface=True) as server:
        probe = TCPClientProbe(f"127.0.0.1:{server.port}")
        probe.open()
        try:
            memory = probe.get_memory_interface_for_ap(APv1Address(0))
            words = [0x11223344, 0xDEADBEEF, 0x00C0FFEE]
            memory.write_memory_block32(0x2000_0100, words)
            assert memory.read_memory_block32(0x2000_0100, 3) == words
            memory.write_memory(0x2000_0101, 0xAB, 8)
            assert memory.read_memory(0x2000_0100, 16) == 0xAB44
            assert memory.read_memory(0xE000_ED00) == 0x410F_C241  # CPUID: a Cortex-M4
            assert probe._read_property("unique_id") == "ABC123"
        finally:
            probe.close()
        assert server.memory(0x2000_0100, 4) == bytes.fromhex("44ab2211")
