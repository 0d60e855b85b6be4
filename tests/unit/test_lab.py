"""labs.yaml validation: every malformed lab gets one line naming file, line and field,
exit code 3, and nothing is started, locked or flashed. Through the CLI in a subprocess:
tests/emulated/test_lab_cli.py."""

import os
import shutil

import pytest
import serial
import yaml

from hil import REPO_ROOT
from hil.firmware import build as firmware
from hil.cli import main
from hil.hw.kinds import BOARD_KINDS
from hil.lab.load import LabError, load_lab
from tests.support.lab_cases import TESTSETS, TEXT_CASES, lab_data

BAD_INPUT = 3


@pytest.fixture
def pty_port():
    """A real pseudo-terminal standing in for a physical board's USB serial port."""
    controller, device = os.openpty()
    yield os.ttyname(device)
    os.close(controller)
    os.close(device)


def physical(port: str, probe: str = "0240000012345678") -> dict:
    return {"slot": "bench", "kind": "mps2-an386", "model": "qute-digits",
            "probe": {"unique_id": probe, "target": "cortex_m"}, "serial": {"port": port}}


def corrupt_image(tmp_path) -> str:
    copy = tmp_path / "corrupt"
    shutil.copytree(firmware.PREBUILT_DIR / "mps2-an386" / "qute-digits", copy)
    image = bytearray((copy / "firmware.bin").read_bytes())
    image[100] ^= 0x01
    (copy / "firmware.bin").write_bytes(bytes(image))
    return str(copy / "manifest.json")


def other_model_manifest(tmp_path) -> str:
    copy = tmp_path / "other"
    shutil.copytree(firmware.PREBUILT_DIR / "mps2-an386" / "qute-mnist1d", copy)
    return str(copy)


def set_path(data, path, value):
    *parents, last = path
    for key in parents:
        data = data[key]
    data[last] = value


# (what is wrong, how to make it from a good lab, a fragment the error must contain)
CASES = [
    ("unknown top-level key", lambda d, t, p: d.update(colour="red"), "colour: unknown key"),
    ("unknown board key", lambda d, t, p: d["boards"][0].update(speed=3), "boards[0].speed: unknown key"),
    ("unknown run key", lambda d, t, p: d["run"].update(threshhold=0.5), "run.threshhold: unknown key"),
    ("missing boards", lambda d, t, p: d.pop("boards"), "missing boards"),
    ("boards not a list", lambda d, t, p: d.update(boards={"slot": "a"}), "boards: must be a non-empty list"),
    ("retries is text", lambda d, t, p: set_path(d, ["run", "retries"], "two"), "run.retries: must be a whole number"),
    ("retries is a bool", lambda d, t, p: set_path(d, ["run", "retries"], True), "run.retries: must be a whole number"),
    ("quarantine_after 0", lambda d, t, p: set_path(d, ["run", "quarantine_after"], 0),
     "run.quarantine_after: 0 is out of range"),
    ("unknown reference", lambda d, t, p: set_path(d, ["run", "reference"], "tensorflow"),
     "run.reference: is 'tensorflow'; give litert"),
    ("reference not text", lambda d, t, p: set_path(d, ["run", "reference"], 3), "run.reference: must be"),
    ("threshold above 1", lambda d, t, p: set_path(d, ["run", "threshold"], 1.5), "run.threshold: 1.5 is out of range"),
    ("negative timeout", lambda d, t, p: set_path(d, ["run", "request_timeout_s"], -1), "run.request_timeout_s"),
    ("unknown board kind", lambda d, t, p: d["boards"][0].update(kind="mps2-an999"), "boards[0].kind: unknown board"),
    ("duplicate slot", lambda d, t, p: d["boards"].append(dict(d["boards"][0])), "boards[1].slot: slot 'a' is used"),
    ("bad slot name", lambda d, t, p: d["boards"][0].update(slot="a/b"), "boards[0].slot"),
    ("board model not listed", lambda d, t, p: d["boards"][0].update(model="qute-mnist1d"),
     "boards[0].model: model 'qute-mnist1d' is not under models"),
    ("no firmware for a board", lambda d, t, p: d.update(firmware={}), "firmware: no image for board a"),
    ("missing manifest", lambda d, t, p: set_path(d, ["firmware", "mps2-an386", "qute-digits"], str(t / "nope.json")),
     "no such firmware manifest"),
    ("image hash mismatch", lambda d, t, p: set_path(d, ["firmware", "mps2-an386", "qute-digits"], corrupt_image(t)),
     "sha256 does not match"),
    ("manifest for another model", lambda d, t, p: set_path(d, ["firmware", "mps2-an386", "qute-digits"],
                                                            other_model_manifest(t)), "that manifest is for"),
    ("missing model", lambda d, t, p: set_path(d, ["models", "qute-digits", "path"], str(t / "nomodel")),
     "models.qute-digits.path"),
    ("missing test set", lambda d, t, p: set_path(d, ["models", "qute-digits", "testsets"], [str(t / "x.npz")]),
     "no such test set"),
    ("test set of another model", lambda d, t, p: set_path(
        d, ["models", "qute-digits", "testsets"], [str(TESTSETS / "qute-mnist1d" / "clean.npz")]), "does not fit"),
    ("glob matches nothing", lambda d, t, p: set_path(d, ["models", "qute-digits", "testsets"], [str(t / "*.npz")]),
     "matches no file"),
    ("physical board without serial", lambda d, t, p: d["boards"].__setitem__(
        0, {k: v for k, v in physical(p).items() if k != "serial"}), "needs probe and serial"),
    ("emulated board with a probe", lambda d, t, p: d["boards"][0].update(probe={"unique_id": "x", "target": "y"}),
     "boards[0].probe: an emulated board has no probe"),
    ("serial port missing", lambda d, t, p: d["boards"].__setitem__(0, physical(str(t / "ttyNONE"))),
     "not found; is the board plugged in"),
    ("serial with port and usb_serial", lambda d, t, p: d["boards"].__setitem__(
        0, {**physical(p), "serial": {"port": p, "usb_serial": "X"}}), "exactly one of port"),
    ("two boards on one probe", lambda d, t, p: d["boards"].extend(
        [physical(p), {**physical(p), "slot": "bench2", "serial": {"port": "/dev/null"}}]),
     "probe 0240000012345678 is already used by board bench"),
    ("duplicate YAML key", None, "appears twice"),
    ("not YAML", None, "not valid YAML"),
]


def write(tmp_path, data) -> str:
    path = tmp_path / "labs.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def make_case(name, edit, tmp_path, port):
    data = lab_data(tmp_path)
    if name == "duplicate YAML key":
        path = write(tmp_path, data)
        path.write_text(path.read_text().replace("lab: validation", "lab: validation\nlab: again"))
        return path
    if name == "not YAML":
        path = tmp_path / "labs.yaml"
        path.write_text("lab: [unclosed\nboards: {\n")
        return path
    edit(data, tmp_path, port)
    return write(tmp_path, data)


def test_the_good_lab_loads(tmp_path):
    lab = load_lab(write(tmp_path, lab_data(tmp_path)))
    assert [b.slot for b in lab.boards] == ["a"] and lab.boards[0].emulated
    assert lab.run.threshold_q15 == 29491 and lab.run.retries == 1 and lab.run.request_timeout_s == 5.0
    assert lab.run.quarantine_after == 3  # the default
    assert [t.name for t in lab.models["qute-digits"].testsets] == ["clean"]


def test_the_committed_lab_loads():
    lab = load_lab(REPO_ROOT / "labs.yaml")
    assert len(lab.boards) == 4 and all(b.emulated for b in lab.boards)
    assert {len(m.testsets) for m in lab.models.values()} == {5}
    assert {(b.kind, b.model) for b in lab.boards} == set(lab.firmware)


def test_the_committed_lab_is_the_papers_rack_as_far_as_emulation_allows():
    lab = load_lab(REPO_ROOT / "labs.yaml")
    assert sorted((b.kind, b.model) for b in lab.boards) == [
        ("mps2-an500", "qute-digits"), ("mps2-an500", "qute-mnist1d"),
        ("nucleo-l432kc", "qute-digits"), ("nucleo-l432kc", "qute-mnist1d")]


def test_the_physical_rack_example_validates_as_far_as_it_can_without_boards(tmp_path):
    # Its ports are placeholders for boards that are not here: each is stood in for by a real pty, the one
    # check that needs a board. Everything else (kinds, pyOCD targets, images at 0x0800_0000, models, test
    # sets) is checked as the file is.
    from pyocd.target import TARGET

    example = REPO_ROOT / "labs" / "nucleo-rack.yaml"
    data = yaml.safe_load(example.read_text())
    ptys = [os.openpty() for _ in data["boards"]]
    try:
        for board, (_, device) in zip(data["boards"], ptys):
            assert board["serial"]["port"].startswith("/dev/serial/by-id/usb-STMicroelectronics_STM32_STLink_")
            board["serial"]["port"] = os.ttyname(device)
        here = example.parent  # the example's relative paths, from where the copy is
        for model in data["models"].values():
            model["path"] = str(here / model["path"])
            model["testsets"] = [str(here / pattern) for pattern in model["testsets"]]
        for images in data["firmware"].values():
            images.update({model: str(here / path) for model, path in images.items()})
        data["results"] = str(tmp_path / "results")
        lab = load_lab(write(tmp_path, data))
    finally:
        for controller, device in ptys:
            os.close(controller)
            os.close(device)
    assert sorted((b.kind, b.model) for b in lab.boards) == [
        ("nucleo-f767zi", "qute-digits"), ("nucleo-f767zi", "qute-mnist1d"),
        ("nucleo-l432kc", "qute-digits"), ("nucleo-l432kc", "qute-mnist1d")]
    for board in lab.boards:
        assert not board.emulated and board.physical.target == BOARD_KINDS[board.kind].pyocd_target
        assert board.physical.target in TARGET  # pyOCD has the real target built in
        assert lab.firmware[(board.kind, board.model)].load_address == 0x0800_0000
    # The emulated rack is the twin: its nucleo-l432kc boards run the very images these Nucleos are flashed with.
    default = load_lab(REPO_ROOT / "labs.yaml")
    twins = {key: image for key, image in default.firmware.items() if key[0] == "nucleo-l432kc"}
    assert len(twins) == 2
    assert {key: image.image_sha256 for key, image in twins.items()} == {
        key: lab.firmware[key].image_sha256 for key in twins}


def refused_line(path, tmp_path, capsys, monkeypatch) -> str:
    """`hil run path`: exit 3 with one line, and nothing locked or made (boards are locked, and then
    the run directory made, only after the lab is validated). Returns the line."""
    locks = tmp_path / "locks"
    monkeypatch.setenv("HIL_LOCK_DIR", str(locks))
    code = main(["run", str(path)])
    err = capsys.readouterr().err
    assert code == BAD_INPUT, err
    (line,) = err.strip().splitlines()
    assert not (tmp_path / "results").exists(), "a run directory was made for a bad lab"
    assert not locks.exists(), "a board was locked for a bad lab"
    return line


@pytest.mark.parametrize("name, edit, fragment", CASES, ids=[c[0] for c in CASES])
def test_a_bad_lab_is_one_line_exit_3_and_starts_nothing(tmp_path, pty_port, capsys, name, edit, fragment,
                                                         monkeypatch):
    path = make_case(name, edit, tmp_path, pty_port)
    line = refused_line(path, tmp_path, capsys, monkeypatch)
    assert line.startswith(f"hil: error: {path}:") and fragment in line, line


def test_a_serial_port_in_use_is_refused(tmp_path, pty_port):
    data = lab_data(tmp_path)
    data["boards"] = [physical(pty_port)]
    holder = serial.Serial(pty_port, exclusive=True)  # another program has the port
    try:
        with pytest.raises(LabError, match=r"labs.yaml:\d+: boards\[0\]\.serial: .* is in use by another program"):
            load_lab(write(tmp_path, data))
    finally:
        holder.close()
    assert load_lab(write(tmp_path, data)).boards[0].physical.serial.port == pty_port


def test_errors_name_the_line_of_the_field(tmp_path):
    data = lab_data(tmp_path)
    data["boards"][0]["kind"] = "nope"
    text = yaml.safe_dump(data, sort_keys=False)
    line = next(i for i, row in enumerate(text.splitlines(), 1) if "kind: nope" in row)
    with pytest.raises(LabError, match=rf"labs.yaml:{line}: boards\[0\]\.kind"):
        load_lab(write(tmp_path, data))


@pytest.mark.parametrize("name, edit, fragment", TEXT_CASES, ids=[c[0] for c in TEXT_CASES])
def test_a_malformed_lab_file_is_one_line_exit_3_and_starts_nothing(tmp_path, capsys, monkeypatch, name, edit,
                                                                      fragment):
    content = edit(yaml.safe_dump(lab_data(tmp_path), sort_keys=False))
    path = tmp_path / "labs.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    line = refused_line(path, tmp_path, capsys, monkeypatch)
    assert line.startswith(f"hil: error: {path}") and fragment in line, line
    assert len(line) < 400, line  # values are cut short, never written out whole


def test_the_lab_file_limits_are_documented():
    from dataclasses import fields

    from hil.lab.bounded_yaml import LIMITS

    docs = (REPO_ROOT / "docs" / "labs.md").read_text()
    for field in fields(LIMITS):
        value = getattr(LIMITS, field.name)
        shown = f"{value // 1024} KiB" if field.name == "file_bytes" else f"{value:,}"
        assert f"`{field.name}`" in docs and shown in docs, (field.name, shown)
