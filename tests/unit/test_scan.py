"""`hil lab scan` on the emulated probe (real pyOCD discovery over its remote-probe protocol, the chip's
IDCODE read through it) and ptys. pyserial lists ttys from sysfs, where a pty has no entry and no USB
parent: so the ptys go in as the ListPortInfo records pyserial's sysfs scan would make of a USB VCP
(device, vid, pid, serial_number filled as list_ports_linux does), the lowest level a pty can reach."""

import os

import pytest
import yaml
from serial.tools import list_ports
from serial.tools.list_ports_common import ListPortInfo

from hil.hw.emulated.probe import EmulatedProbe
from hil.lab import load, scan
from hil.lab.load import load_lab

from tests.support.labs import write_lab
from tests.support.ptys import raw_pty

ST_LINK_V2_1 = (0x0483, 0x374B)
STLINK_ID = "066DFF555185754867174316"


def usb_vcp(path: str, serial_number: str | None) -> ListPortInfo:
    port = ListPortInfo(path)
    port.vid, port.pid = ST_LINK_V2_1
    port.serial_number, port.description = serial_number, "STM32 STLink"
    return port


@pytest.fixture
def ptys():
    pairs = [raw_pty() for _ in range(2)]
    yield [path for _master, _slave, path in pairs]
    for master, slave, _path in pairs:
        os.close(master)
        os.close(slave)


def test_a_pty_is_not_in_pyserials_listing(ptys):
    # why the ptys are fed as records: the real listing runs, and cannot see them
    assert not {p.device for p in list_ports.comports()} & set(ptys)


def test_scan_pairs_the_probe_with_its_vcp_guesses_the_kind_and_prints_a_block_the_loader_takes(
        ptys, tmp_path, monkeypatch):
    vcp, lone = usb_vcp(ptys[0], STLINK_ID), usb_vcp(ptys[1], "OTHER-SERIAL")
    with EmulatedProbe(STLINK_ID, "stm32l432kc", core="cortex-m4") as probe:
        probes = scan.find_probes([probe.address])
        boards = scan.pair(probes, scan.find_ports([lone, vcp]))
        text = scan.report(boards)
    assert probes == [scan.ProbeSeen(probe.address, STLINK_ID, f"hil emulated probe via {probe.address}",
                                     "stm32l432kc")]  # the target read from the chip's DBGMCU_IDCODE
    assert [(b.probe and b.probe.serial_number, b.port and b.port.device, b.kind) for b in boards] == [
        (STLINK_ID, vcp.device, "nucleo-l432kc"), (None, lone.device, None)]
    assert f"port {vcp.device} [0483:374b, serial {STLINK_ID}]; kind nucleo-l432kc" in text
    block = yaml.safe_load(text)
    assert block == {"boards": [{"slot": "board-1", "kind": "nucleo-l432kc", "model": "MODEL",
                                 "probe": {"unique_id": probe.address, "target": "stm32l432kc"},
                                 "serial": {"usb_serial": STLINK_ID}}]}

    # the lab loader takes it once the model is filled in (its usb_serial found in the same listing)
    data = yaml.safe_load(write_lab(tmp_path, boards={"x": ("nucleo-l432kc", "qute-digits")}).read_text())
    data["boards"] = [{**entry, "model": "qute-digits"} for entry in block["boards"]]
    lab_file = tmp_path / "scanned.yaml"
    lab_file.write_text(yaml.safe_dump(data, sort_keys=False))
    monkeypatch.setattr(load.list_ports, "comports", lambda: [lone, vcp])
    (board,) = load_lab(lab_file).boards
    assert (board.slot, board.kind, board.physical.probe, board.physical.serial.device) == (
        "board-1", "nucleo-l432kc", probe.address, os.path.realpath(vcp.device))


def test_a_probe_whose_chip_cannot_say_leaves_kind_and_target_to_fill_in():
    with EmulatedProbe("CMSDK-1", "cortex_m", core="cortex-m4") as probe:
        boards = scan.pair(scan.find_probes([probe.address]), [])
    assert (boards[0].probe.target, boards[0].kind) == (None, None)
    entry = yaml.safe_load(scan.boards_block(boards))["boards"][0]
    assert (entry["kind"], entry["probe"]["target"], entry["serial"]) == ("KIND", "TARGET", {"port": "PORT"})


def test_hil_lab_scan_prints_the_block_for_a_probe_server():
    import subprocess
    import sys

    from hil.hw.children import child_env

    with EmulatedProbe(STLINK_ID, "stm32l432kc", core="cortex-m4") as probe:
        done = subprocess.run([sys.executable, "-m", "hil.cli", "lab", "scan", "--probe", probe.address],
                              capture_output=True, text=True, timeout=60, env=child_env())
    assert done.returncode == 0, done.stderr
    assert f"# probe {probe.address} (hil emulated probe via {probe.address}), target stm32l432kc; " in done.stdout
    (entry,) = yaml.safe_load(done.stdout)["boards"]
    assert (entry["kind"], entry["probe"]) == ("nucleo-l432kc", {"unique_id": probe.address, "target": "stm32l432kc"})
