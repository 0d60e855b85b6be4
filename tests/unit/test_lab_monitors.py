"""labs.yaml's boards[i].monitor kinds (hil/lab/load.py): serial (the default), linux-ina219 and ppk2."""

import os

import pytest
import yaml

from hil.lab.load import LabError, LinuxIna219Spec, MonitorKind, Ppk2Mode, Ppk2Spec, load_lab
from tests.support.lab_cases import lab_data


@pytest.fixture
def ptys():
    """Real pseudo-terminals standing in for the board's serial port and a GPIO chip's device."""
    opened = [os.openpty() for _ in range(2)]
    yield [os.ttyname(device) for _, device in opened]
    for pair in opened:
        for fd in pair:
            os.close(fd)


def lab_with(tmp_path, port: str, monitor: dict) -> str:
    data = lab_data(tmp_path)
    data["boards"] = [{"slot": "bench", "kind": "mps2-an386", "model": "qute-digits",
                       "probe": {"unique_id": "0240000012345678", "target": "cortex_m"}, "serial": {"port": port},
                       "monitor": monitor}]
    path = tmp_path / "labs.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def linux_unit(tmp_path, chip: str, **changes) -> dict:
    (tmp_path / "i2c-1").touch()
    unit = {"kind": "linux-ina219", "i2c_bus": str(tmp_path / "i2c-1"), "address": 0x40, "gpio_chip": chip,
            "busy_line": 17, "exit_line": 27, "shunt_ohms": 1.0, "max_current_a": 0.04}
    return {key: value for key, value in {**unit, **changes}.items() if value is not None}


def test_a_monitor_without_kind_is_a_serial_unit(tmp_path, ptys):
    port, unit_port = ptys
    lab = load_lab(lab_with(tmp_path, port, {"port": unit_port, "shunt_ohms": 1.0, "max_current_a": 0.04}))
    monitor = lab.boards[0].physical.monitor
    assert monitor.kind is MonitorKind.SERIAL and monitor.serial.device == os.path.realpath(unit_port)


def test_a_linux_ina219_unit_loads_with_its_wiring(tmp_path, ptys):
    port, chip = ptys
    monitor = load_lab(lab_with(tmp_path, port, linux_unit(tmp_path, chip))).boards[0].physical.monitor
    assert monitor.kind is MonitorKind.LINUX_INA219 and monitor.serial is None
    assert monitor.linux_ina219 == LinuxIna219Spec(str(tmp_path / "i2c-1"), 0x40, chip, 17, 27)


@pytest.mark.parametrize("changes, field, fragment", [
    ({"kind": "joulescope"}, "monitor.kind", "unknown unit kind 'joulescope'; known: serial, linux-ina219, ppk2"),
    ({"gpio_chip": None}, "monitor", "a linux-ina219 unit needs gpio_chip"),
    ({"address": 0x70}, "monitor.address", "out of range [64, 79]"),
    ({"i2c_bus": 7}, "monitor.i2c_bus", "/dev/i2c-7 not found; load i2c-dev"),
    ({"gpio_chip": "/dev/gpiochip99"}, "monitor.gpio_chip", "/dev/gpiochip99 not found"),
    ({"exit_line": 17}, "monitor.exit_line", "is the busy line too"),
    ({"port": "/dev/ttyACM1"}, "monitor.port", "unknown key"),
])
def test_a_wrong_linux_ina219_unit_is_one_line_naming_the_field(tmp_path, ptys, changes, field, fragment):
    port, chip = ptys
    with pytest.raises(LabError) as error:
        load_lab(lab_with(tmp_path, port, linux_unit(tmp_path, chip, **changes)))
    message = str(error.value)
    assert f"boards[0].{field}:" in message and fragment in message and "\n" not in message, message


def ppk2_unit(ppk2_port: str, **changes) -> dict:
    unit = {"kind": "ppk2", "port": ppk2_port, "mode": "source", "vdd_mv": 3300, "busy_channel": 0, "exit_channel": 1}
    return {key: value for key, value in {**unit, **changes}.items() if value is not None}


@pytest.mark.parametrize("mode", list(Ppk2Mode))
def test_a_ppk2_loads_with_its_mode_voltage_and_channels(tmp_path, ptys, mode):
    port, ppk2_port = ptys
    monitor = load_lab(lab_with(tmp_path, port, ppk2_unit(ppk2_port, mode=mode.value))).boards[0].physical.monitor
    assert monitor.kind is MonitorKind.PPK2 and monitor.serial.device == os.path.realpath(ppk2_port)
    assert monitor.ppk2 == Ppk2Spec(mode, 3300, 0, 1) and monitor.shunt_ohms is None


@pytest.mark.parametrize("changes, field, fragment", [
    ({"mode": None}, "monitor", "a ppk2 unit needs mode"),
    ({"mode": "smu"}, "monitor.mode", "give source (the PPK2 powers the board) or ampere"),
    ({"vdd_mv": 5500}, "monitor.vdd_mv", "out of range [800, 5000]"),
    ({"exit_channel": 8}, "monitor.exit_channel", "out of range [0, 7]"),
    ({"exit_channel": 0}, "monitor.exit_channel", "is the busy channel too"),
    ({"shunt_ohms": 1.0}, "monitor.shunt_ohms", "unknown key"),
    ({"baudrate": 9600}, "monitor.baudrate", "unknown key"),
    ({"port": "socket://localhost:7000"}, "monitor.port", "ppk2-api opens a local port, not a URL"),
    ({"port": "/dev/ttyACM9"}, "monitor", "/dev/ttyACM9 not found"),
])
def test_a_wrong_ppk2_is_one_line_naming_the_field(tmp_path, ptys, changes, field, fragment):
    port, ppk2_port = ptys
    with pytest.raises(LabError) as error:
        load_lab(lab_with(tmp_path, port, ppk2_unit(ppk2_port, **changes)))
    message = str(error.value)
    assert f"boards[0].{field}" in message and fragment in message and "\n" not in message, message
