"""labs.yaml's boards[i].power_cycle (hil/lab/load.py): the recovery ladder's way to cycle a physical board's power."""

import os

import pytest
import yaml

from hil.lab.load import LabError, PowerCycleSpec, load_lab
from tests.support.lab_cases import lab_data


@pytest.fixture
def port():
    controller, device = os.openpty()
    yield os.ttyname(device)
    os.close(controller), os.close(device)


def lab_with(tmp_path, port: str, power_cycle, emulated: bool = False) -> str:
    data = lab_data(tmp_path)
    board = {"slot": "bench", "kind": "mps2-an386", "model": "qute-digits", "power_cycle": power_cycle}
    if emulated:
        board["emulated"] = True
    else:
        board.update(probe={"unique_id": "0240000012345678", "target": "cortex_m"}, serial={"port": port})
    data["boards"] = [board]
    path = tmp_path / "labs.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_a_power_cycle_command_loads_with_its_timeout(tmp_path, port):
    lab = load_lab(lab_with(tmp_path, port, {"command": "uhubctl -a cycle -l 1-1 -p 2", "timeout_s": 12}))
    assert lab.boards[0].physical.power_cycle == PowerCycleSpec("uhubctl -a cycle -l 1-1 -p 2", 12.0)
    lab = load_lab(lab_with(tmp_path, port, {"command": "relay-tool off-on 3"}))
    assert lab.boards[0].physical.power_cycle.timeout_s == 30.0


@pytest.mark.parametrize("power_cycle, emulated, field, fragment", [
    ({"command": " "}, False, "power_cycle.command", "must not be empty"),
    ({"timeout_s": 5}, False, "power_cycle", "missing command"),
    ({"command": "x", "timeout_s": 0}, False, "power_cycle.timeout_s", "out of range"),
    ({"command": "x"}, True, "power_cycle", "an emulated board has no probe, serial, monitor or power_cycle"),
])
def test_a_wrong_power_cycle_is_one_line_naming_the_field(tmp_path, port, power_cycle, emulated, field, fragment):
    with pytest.raises(LabError) as error:
        load_lab(lab_with(tmp_path, port, power_cycle, emulated))
    message = str(error.value)
    assert f"boards[0].{field}" in message and fragment in message and "\n" not in message, message
