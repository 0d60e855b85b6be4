"""labs.yaml's boards[i].place and labgrid.coordinator (hil/lab/load.py): boards on labgrid places
(docs/distributed.md), checked at load as every other field; and the run's side of a lab without places."""

from types import SimpleNamespace

import pytest
import yaml

from hil.lab.load import LabError, LabgridSettings, PlaceSpec, load_lab
from hil.run import places
from tests.support.lab_cases import lab_data

COORDINATOR = "lab-coordinator:20408"


def lab_with(tmp_path, *boards: dict, labgrid: dict | None = None) -> str:
    data = lab_data(tmp_path)
    data["boards"] = [{"slot": f"b{i}", "kind": "mps2-an386", "model": "qute-digits", **board}
                      for i, board in enumerate(boards)]
    if labgrid is not None:
        data["labgrid"] = labgrid
    path = tmp_path / "labs.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_a_place_by_name_and_places_by_tags_load_as_boards_to_resolve(tmp_path):
    lab = load_lab(lab_with(tmp_path, {"place": "rack-a-1"},
                            {"place": {"tags": {"board": "mps2-an386", "rack": "ci"}, "count": 2},
                             "monitor": {"shunt_ohms": 0.1, "max_current_a": 0.4}},
                            labgrid={"coordinator": COORDINATOR}))
    assert lab.labgrid == LabgridSettings(COORDINATOR)
    assert [b.slot for b in lab.boards] == ["b0", "b1-1", "b1-2"]
    assert lab.boards[0].place == PlaceSpec("rack-a-1")
    tagged = PlaceSpec(None, (("board", "mps2-an386"), ("rack", "ci")), (0.1, 0.4))
    assert lab.boards[1].place == lab.boards[2].place == tagged
    assert tagged.wanted == "a place tagged board=mps2-an386,rack=ci"
    # Not emulated, and not physical until a run has acquired the place.
    assert all(b.physical is None and not b.emulated for b in lab.boards)


def test_the_coordinator_may_come_from_labgrid_s_own_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("LG_COORDINATOR", "10.0.0.5:20408")
    assert load_lab(lab_with(tmp_path, {"place": "p"})).labgrid == LabgridSettings("10.0.0.5:20408")
    assert load_lab(lab_with(tmp_path, {"emulated": True})).labgrid is None  # no place: no coordinator needed


# (a board's keys, labs.yaml's labgrid, the field the loader names, a fragment of its message); the first needs
# LG_COORDINATOR unset, what a schema cannot see (tests/unit/test_lab_schema.py checks it refuses the rest).
BAD_PLACES = [
    ({"place": "p"}, None, "labgrid.coordinator", "no coordinator is named; add labgrid"),
    ({"place": "p"}, {"coordinator": "no-port"}, "labgrid.coordinator", "is not HOST:PORT"),
    ({"place": "p", "emulated": True}, {"coordinator": COORDINATOR}, "boards[0].emulated",
     "gets its probe and ports from the place"),
    ({"place": "p", "serial": {"port": "/dev/null"}}, {"coordinator": COORDINATOR}, "boards[0].serial",
     "gets its probe and ports from the place"),
    ({"place": "p q"}, {"coordinator": COORDINATOR}, "boards[0].place", "is not a labgrid place name"),
    ({"place": {"tags": {}}}, {"coordinator": COORDINATOR}, "boards[0].place.tags", "name at least one tag"),
    ({"place": {"tags": {"board": "Big Board"}}}, {"coordinator": COORDINATOR}, "boards[0].place.tags.board",
     "a labgrid tag is"),
    ({"place": {"tags": {"Rack": "ci"}}}, {"coordinator": COORDINATOR}, "boards[0].place.tags.Rack",
     "a labgrid tag is"),
    ({"place": {"tags": {"rack": "ci"}, "count": 0}}, {"coordinator": COORDINATOR}, "boards[0].place.count",
     "out of range"),
    ({"place": {"count": 2}}, {"coordinator": COORDINATOR}, "boards[0].place", "missing tags"),
    ({"place": "p", "monitor": {"shunt_ohms": 0.1}}, {"coordinator": COORDINATOR}, "boards[0].monitor",
     "missing max_current_a"),
]


@pytest.mark.parametrize("board, labgrid, field, fragment", BAD_PLACES)
def test_a_bad_place_is_one_line_naming_its_field(tmp_path, monkeypatch, board, labgrid, field, fragment):
    monkeypatch.delenv("LG_COORDINATOR", raising=False)
    path = lab_with(tmp_path, board, labgrid=labgrid)
    with pytest.raises(LabError) as caught:
        load_lab(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:") and f": {field}: " in message and fragment in message, message
    assert "\n" not in message


def test_tagged_slots_that_clash_with_a_named_board_are_refused(tmp_path):
    path = lab_with(tmp_path, {"place": {"tags": {"rack": "ci"}, "count": 2}}, {"emulated": True},
                    labgrid={"coordinator": COORDINATOR})
    data = yaml.safe_load(open(path))
    data["boards"][1]["slot"] = "b0-2"
    open(path, "w").write(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(LabError, match=r"boards\[1\]\.slot: slot 'b0-2' is used twice"):
        load_lab(path)


def test_two_boards_on_one_place_are_refused(tmp_path):
    path = lab_with(tmp_path, {"place": "p"}, {"place": "p"}, labgrid={"coordinator": COORDINATOR})
    with pytest.raises(LabError, match=r"boards\[1\]\.place: place p is already used by board b0"):
        load_lab(path)


def test_a_lab_without_places_is_held_as_it_is_without_a_coordinator(tmp_path):
    lab = load_lab(lab_with(tmp_path, {"emulated": True}))
    with places.held(lab, ["b0"]) as held:
        assert held is lab


def entry(cls: str, **params):
    """A resource as a labgrid client session holds it (labgrid.remote.common.ResourceEntry)."""
    from labgrid.remote.common import ResourceEntry

    return ResourceEntry({"cls": cls, "params": params, "avail": True, "acquired": "p"})


def test_an_acquired_place_s_resources_become_a_physical_board_s_urls(tmp_path):
    lab = load_lab(lab_with(tmp_path, {"place": "p", "monitor": {"shunt_ohms": 0.1, "max_current_a": 0.4}},
                            labgrid={"coordinator": COORDINATOR}))
    found = {"console": entry("NetworkSerialPort", host="lab-host-1", port=40001, speed=115200),
             "probe": entry("NetworkService", address="lab-host-1", port=5555, username="pyocd"),
             "monitor": entry("NetworkSerialPort", host="lab-host-1", port=40002, speed=115200)}
    assert places._missing(found) is None
    spec = places._resolved(lab.boards[0], "p", places._urls(found))
    physical = spec.physical
    assert physical.serial.device == "rfc2217://lab-host-1:40001?ign_set_control"
    assert physical.probe == "remote:lab-host-1:5555" and physical.target == "cortex_m" and physical.place == "p"
    assert physical.monitor.serial.device == "rfc2217://lab-host-1:40002?ign_set_control"
    assert (physical.monitor.shunt_ohms, physical.monitor.max_current_a) == (0.1, 0.4)
    assert not spec.emulated and spec.place.name == "p"


@pytest.mark.parametrize("found, problem", [
    ({"probe": entry("NetworkService", address="h", port=1, username="pyocd")},
     "no console resource (NetworkSerialPort) acquired"),
    ({"console": entry("NetworkSerialPort", host="h", port=None),
      "probe": entry("NetworkService", address="h", port=1, username="pyocd")},
     "its console's ser2net has not started"),
    ({"console": entry("NetworkSerialPort", host="h", port=2), "probe": entry("NetworkSerialPort", host="h", port=1)},
     "its probe is a NetworkSerialPort, not a NetworkService"),
])
def test_a_place_short_of_a_resource_says_which(found, problem):
    assert places._missing(found) == problem


def test_a_place_with_a_monitor_needs_the_lab_s_calibration(tmp_path):
    lab = load_lab(lab_with(tmp_path, {"place": "p"}, labgrid={"coordinator": COORDINATOR}))
    resources = places.PlaceResources("rfc2217://h:1", 115200, "remote:h:2", "rfc2217://h:3")
    with pytest.raises(places.BoardError, match="b0: place p has a monitor, but the lab gives no calibration"):
        places._resolved(lab.boards[0], "p", resources)


def test_the_committed_places_example_loads():
    from hil import REPO_ROOT

    lab = load_lab(REPO_ROOT / "labs" / "nucleo-rack-places.yaml")
    assert lab.labgrid == LabgridSettings("coordinator-host:20408")
    assert [(b.slot, b.place.name) for b in lab.boards] == [
        ("l432-digits", "rack-a-1"), ("l432-mnist1d", "rack-a-2"), ("f767-digits-1", None), ("f767-digits-2", None)]
    assert lab.boards[0].place.calibration == (0.1, 0.4)


def test_the_example_exporter_config_renders_its_drop_ins_as_labgrid_reads_it(tmp_path):
    """labs/labgrid/exporter.yaml through labgrid's own config reader: every group `hil board serve` wrote is in it."""
    import shutil

    from labgrid.remote.config import ResourceConfig

    from hil import REPO_ROOT
    from hil.hw.emulated import served

    shutil.copy(REPO_ROOT / "labs" / "labgrid" / "exporter.yaml", tmp_path / "exporter.yaml")
    (tmp_path / "exporter.yaml.d").mkdir()
    for name, port, unit in (("emu-1", 5601, None), ("emu-2", 5602, "/dev/pts/9")):
        board = SimpleNamespace(port=f"/dev/pts/{port}", probe=SimpleNamespace(host="h", port=port))  # its fields
        group = served.exporter_group(board, name, unit)
        (tmp_path / "exporter.yaml.d" / f"{name}.yaml").write_text(yaml.safe_dump(group))
    groups = ResourceConfig(str(tmp_path / "exporter.yaml"), {"env": {}, "isolated": False}).data
    assert sorted(groups) == ["emu-1", "emu-2"]
    assert groups["emu-2"]["console"] == {"cls": "RawSerialPort", "port": "/dev/pts/5602", "speed": 115200}
    assert groups["emu-2"]["probe"] == {"cls": "NetworkService", "address": "h", "port": 5602, "username": "pyocd"}
    assert groups["emu-2"]["monitor"] == {"cls": "RawSerialPort", "port": "/dev/pts/9", "speed": 115200}
    assert "monitor" not in groups["emu-1"]


def test_a_coordinator_that_is_not_there_refuses_the_run_naming_it(tmp_path):
    import socket

    with socket.socket() as unused:  # a port nothing listens on
        unused.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{unused.getsockname()[1]}"
    lab = load_lab(lab_with(tmp_path, {"place": "p"}, labgrid={"coordinator": address}))
    with pytest.raises(places.BoardError, match=f"labgrid coordinator {address}: cannot connect"):
        with places.held(lab, ["b0"]):
            pass


def test_hil_board_serve_refuses_a_kind_it_cannot_serve(capsys):
    from hil.cli import main

    assert main(["board", "serve", "--kind", "mps2-an386"]) == 3
    assert "--kind mps2-an386 cannot be served; served kinds: nucleo-l432kc" in capsys.readouterr().err
