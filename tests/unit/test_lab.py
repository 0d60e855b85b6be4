"""labs.yaml validation: every malformed lab gets one line naming file, line and field,
exit code 3, and nothing is started, locked or flashed."""

import os
import re
import resource
import shutil
import subprocess
import sys
import time

import pytest
import serial
import yaml

from hil import REPO_ROOT
from hil.firmware import build as firmware
from hil.cli import main
from hil.lab.load import LabError, load_lab

BAD_INPUT = 3
MODELS = REPO_ROOT / "fixtures" / "models"
TESTSETS = REPO_ROOT / "fixtures" / "testsets"


def lab_data(tmp_path) -> dict:
    return {
        "lab": "validation",
        "results": str(tmp_path / "results"),
        "models": {"qute-digits": {"path": str(MODELS / "qute-digits"),
                                   "testsets": [str(TESTSETS / "qute-digits" / "clean.npz")]}},
        "firmware": {"mps2-an386": {"qute-digits": str(firmware.PREBUILT_DIR / "mps2-an386" / "qute-digits")}},
        "boards": [{"slot": "a", "kind": "mps2-an386", "model": "qute-digits", "emulated": True}],
        "run": {"threshold": 0.9, "retries": 1},
    }


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
    assert [t.name for t in lab.models["qute-digits"].testsets] == ["clean"]


def test_the_committed_lab_loads():
    lab = load_lab(REPO_ROOT / "labs.yaml")
    assert len(lab.boards) == 4 and all(b.emulated for b in lab.boards)
    assert {len(m.testsets) for m in lab.models.values()} == {5}
    assert {(b.kind, b.model) for b in lab.boards} == set(lab.firmware)


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


def nested_aliases(levels: int, fan: int) -> str:
    """A flow list of `levels` anchors, each holding `fan` aliases of the one before: fan**levels values."""
    items = ["&a0 [" + ", ".join(["lol"] * fan) + "]"]
    items += [f"&a{i} [" + ", ".join([f"*a{i - 1}"] * fan) + "]" for i in range(1, levels)]
    return "[" + ", ".join(items) + "]"


def replace(old: str, new: str):
    def edit(text: str) -> str:
        assert old in text, old
        return text.replace(old, new, 1)
    return edit


LONG_NAME = "n" * 300  # longer than a file name may be (255 bytes)
# (what is wrong, how to make it from the good lab's YAML text, a fragment the error must contain).
# Each of these gave a traceback, a wrong message or a run before; true/false or null for a number, an
# empty file and tabs were already refused well (CASES and "not YAML" above).
TEXT_CASES = [
    ("threshold .nan", replace("threshold: 0.9", "threshold: .nan"), "run.threshold: must be a number, not '.nan'"),
    ("threshold 0x1", replace("threshold: 0.9", "threshold: 0x1"), "run.threshold: write it as a decimal"),
    ("threshold 0b1", replace("threshold: 0.9", "threshold: 0b1"), "run.threshold: write it as a decimal"),
    ("threshold octal 0_1", replace("threshold: 0.9", "threshold: 0_1"), "run.threshold: write it as a decimal"),
    ("threshold .inf", replace("threshold: 0.9", "threshold: .inf"), "run.threshold: .inf is out of range [0.0, 1.0]"),
    ("threshold -.inf", replace("threshold: 0.9", "threshold: -.inf"), "run.threshold: -.inf is out of range"),
    ("threshold 1e400", replace("threshold: 0.9", "threshold: 1e400"),
     "run.threshold: must be a number, not '1e400' (YAML 1.1 reads this spelling as text"),
    ("threshold quoted", replace("threshold: 0.9", "threshold: '0.9'"), "(it is quoted; write it without quotes)"),
    ("threshold a huge int", replace("threshold: 0.9", "threshold: " + "9" * 400),
     "run.threshold: 9999999999999999999999999999999999999999… is out of range [0.0, 1.0]"),
    ("timeout a huge int", replace("retries: 1", "retries: 1\n  request_timeout_s: " + "9" * 400),
     "run.request_timeout_s: 9999999999999999999999999999999999999999… is out of range"),
    ("timeout .nan", replace("retries: 1", "retries: 1\n  request_timeout_s: .nan"),
     "run.request_timeout_s: must be a number, not '.nan'"),
    ("threshold a list", replace("threshold: 0.9", "threshold: [0.9]"), "run.threshold: must be a number, not a list"),
    ("retries !!int on text", replace("retries: 1", "retries: !!int abc"), "run.retries: must be a whole number"),
    ("alpha .nan", lambda t: t + "regression:\n  alpha: .nan\n", "regression.alpha: must be a number, not '.nan'"),
    ("alpha 0", lambda t: t + "regression:\n  alpha: 0\n", "regression.alpha: 0 is out of range (0.0, 1.0)"),
    ("confidence 1", lambda t: t + "regression:\n  confidence: 1\n", "regression.confidence: 1 is out of range"),
    ("bootstrap_resamples 0", lambda t: t + "regression:\n  bootstrap_resamples: 0\n",
     "regression.bootstrap_resamples: 0 is out of range [1, 1000000]"),
    ("a python tag", replace("kind: mps2-an386", "kind: !!python/object:os.system x"),
     "boards[0].kind: the YAML tag tag:yaml.org,2002:python/object:os.syste… is not supported"),
    ("an unknown tag", replace("kind: mps2-an386", "kind: !board x"), "boards[0].kind: the YAML tag !board"),
    ("only a document marker", lambda t: "---\n", "the lab file is empty"),
    ("two documents", lambda t: t + "---\n" + t, "expected a single document in the stream"),
    ("a list at the top", lambda t: "- lab\n- boards\n", "lab file: must be a mapping of keys to values, not a list"),
    ("not UTF-8", lambda t: t.encode().replace(b"validation", b"valid\xc3ation"), ":1: not UTF-8 text (byte 10)"),
    ("UTF-16", lambda t: t.encode("utf-16"), "not UTF-8 text"),
    ("a NUL byte", replace("validation", "valid\0ation"), ":1: not valid YAML (control character"),
    ("deep brackets", replace("lab: validation", "lab: " + "[" * 5000 + "]" * 5000),
     ":1: nested deeper than 32 levels"),
    ("deep mappings", replace("lab: validation", "lab: " + "{a: " * 5000 + "1" + "}" * 5000),
     ":1: nested deeper than 32 levels"),
    ("a list as a key", lambda t: t + "? [lab, boards]\n: 1\n", "lab file: a key must be plain text, not a list"),
    ("a NUL in a path", lambda t: re.sub(r"results: .*", r'results: "/tmp/a\\0b"', t, count=1),
     ":2: results: must not hold a NUL character"),
    ("a file name too long", replace("testsets:\n", f"testsets:\n    - {LONG_NAME}.npz\n"),
     "models.qute-digits.testsets: "),  # then the system's own words, e.g. "File name too long; fix the path"
    ("a value too long", replace("lab: validation", "lab: " + "x" * 5000),
     ":1: a key or value of 5000 characters, more than 4096"),
    ("a file too large", lambda t: t + "#" * (300 * 1024) + "\n", "larger than 256 KiB"),
    ("too many aliases", lambda t: "x: &x 1\nlab: [" + ", ".join(["*x"] * 65) + "]\n", ":2: more than 64 aliases"),
    ("aliases expanding", replace("lab: validation", "lab: " + nested_aliases(8, 5)),
     ":1: holds more than 100000 values once its aliases are expanded"),
]


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


def hil_cli(*args, memory_bytes: int | None = None):
    """`python -m hil.cli` as a user runs it, optionally within an address-space limit."""
    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    return subprocess.run([sys.executable, "-m", "hil.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "NO_COLOR": "1"},
                          preexec_fn=limit if memory_bytes else None)


@pytest.mark.parametrize("where", ["a value", "a key"])
def test_a_billion_laughs_lab_is_refused_fast_within_bounded_memory(tmp_path, where):
    """Nine anchors of nine aliases: a 1 KB file whose value expands to 9**9 = 387 million strings."""
    laughs = nested_aliases(9, 9)
    text = yaml.safe_dump(lab_data(tmp_path), sort_keys=False)
    text = text.replace("lab: validation", f"lab: {laughs}" if where == "a value" else f"lab: x\n? {laughs}\n: 1")
    path = tmp_path / "labs.yaml"
    path.write_text(text)
    assert len(laughs) < 1100
    started = time.monotonic()
    # 1 GiB of address space: plenty for hil, far below what expanding the aliases takes.
    result = hil_cli("run", path, memory_bytes=1 << 30)
    assert time.monotonic() - started < 60
    assert result.returncode == BAD_INPUT, result.stderr[-2000:]
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"hil: error: {path}:") and "once its aliases are expanded" in line, line
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("name", ["threshold .nan", "threshold 0x1", "threshold a huge int", "deep brackets",
                                  "not UTF-8", "a python tag"])
def test_the_cli_refuses_a_malformed_lab_with_one_line_and_exit_3(tmp_path, name):
    _, edit, fragment = next(c for c in TEXT_CASES if c[0] == name)
    content = edit(yaml.safe_dump(lab_data(tmp_path), sort_keys=False))
    path = tmp_path / "labs.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    result = hil_cli("run", path)
    assert result.returncode == BAD_INPUT, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"hil: error: {path}") and fragment in line, line
