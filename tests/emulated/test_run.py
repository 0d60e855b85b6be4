"""`hil run` end to end on emulated boards: real QEMU, real ptys, real files, as a user runs it."""

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hil import REPO_ROOT
from hil.firmware import build as firmware
from hil.model.reference import Reference
from hil.hw.factory import lock_name
from hil.hw.kinds import BOARD_KINDS
from hil.lab.load import load_lab
from hil.hw.locks import Lock
from hil.run.records import read_measurements, read_records
from tests.support.labs import (BAD_INPUT, BOARDS, INFRASTRUCTURE, PASS, REGRESSION, USAGE, hil, run_dir_of,
                                 write_lab)

pytestmark = pytest.mark.skipif(shutil.which("qemu-system-arm") is None, reason="qemu-system-arm not installed")


def test_a_run_passes_and_keeps_everything(tmp_path):
    lab = write_lab(tmp_path)
    result = hil("run", lab, "--json")
    assert result.returncode == PASS, result.stderr
    summary = json.loads(result.stdout)
    assert summary["verdict"]["status"] == "pass"
    run_dir = Path(summary["run_dir"])
    records = read_records(run_dir)
    assert len(records) == 2 * 3 * 12
    assert all(r.attempts == 1 for r in records)
    run = json.loads((run_dir / "run.json").read_text())
    assert run["git"]["revision"] and run["software"]["ai-edge-litert"]
    for slot, (kind, model) in BOARDS.items():
        board = run["boards"][slot]
        manifest = firmware.prebuilt(kind, model)
        assert board["reported"]["firmware_sha256"] == manifest.image_sha256
        assert board["reported"]["model_sha256"] == manifest.model_sha256 == run["models"][model]["sha256"]
        assert board["firmware"]["source_sha256"] == manifest.source_sha256
        flash = board["flash"]  # what pyOCD wrote through the board's emulated probe, read back
        assert flash["verified"] is True and flash["method"] == "pyocd"
        assert (flash["image_sha256"], flash["base_address"]) == (manifest.image_sha256, manifest.load_address)
        assert flash["target"] == BOARD_KINDS[kind].pyocd_target
        assert flash["bytes"] == manifest.bin.stat().st_size
    assert all(t["sha256"] for sets in run["testsets"].values() for t in sets.values())
    import pyarrow.parquet as pq

    assert pq.read_table(run_dir / "records.parquet").num_rows == len(records)
    with sqlite3.connect(run_dir.parent / "catalog.sqlite") as db:
        assert db.execute("SELECT status, exit_code FROM runs WHERE id = ?", (run_dir.name,)).fetchone() == ("pass", 0)
    assert "\x1b[" not in result.stderr, "NO_COLOR was not honoured"


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None and not os.environ.get("CI"),
                    reason="needs the ARM toolchain (CI installs it)")
def test_a_firmware_with_changed_rounding_is_caught(tmp_path):
    source = tmp_path / "firmware"
    shutil.copytree(firmware.FIRMWARE_DIR, source, ignore=shutil.ignore_patterns("prebuilt", "build"))
    kernels = source / "src" / "kernels.c"
    text = kernels.read_text()
    # The rounding the images run: the DSP kernels' rescale (every board kind is a Cortex-M4 or M7).
    rounding = "((high & r->mask) > threshold ? 1 : 0)"
    assert rounding in text
    kernels.write_text(text.replace(rounding, rounding.replace("> threshold", ">= threshold")))
    (broken,) = firmware.build(out=tmp_path / "broken", source_dir=source, images=[("mps2-an500", "qute-mnist1d")],
                               roundings=(Reference.LITERT,))
    assert broken.image_sha256 != firmware.prebuilt("mps2-an500", "qute-mnist1d").image_sha256
    lab = write_lab(tmp_path, samples=40, manifests={("mps2-an500", "qute-mnist1d"): broken.directory / "manifest.json"})
    result = hil("run", lab)
    assert result.returncode == REGRESSION, result.stdout + result.stderr
    assert "FAIL" in result.stdout
    assert re.search(r"an500-mnist1d/\S+: \d+ of \d+ answers differ from the host reference", result.stdout)
    assert "Answers that differ from the litert host reference" in result.stdout  # the differing samples are listed
    # Every convolution rounds its ties up now: the first layer is where the device first diverges.
    assert "an500-mnist1d/clean#0: first diverging layer 0 (stage1 CONV_2D)" in " ".join(result.stdout.split())
    assert "an386-digits" in result.stdout and "an386-digits/" not in result.stdout.split("verdict")[-1]


def qemu_pids(slot: str, parent: int | None = None) -> list[int]:
    """QEMU processes of the board in `slot` (and started by `parent`, if given): each boots its flash from
    its own folder, hil-<slot>-*/ (hil/hw/emulated/qemu.py)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                command = (proc / "cmdline").read_bytes().split(b"\0")
                ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if (command and command[0].endswith(b"qemu-system-arm") and parent in (None, ppid)
                    and any(f"/hil-{slot}-".encode() in argument for argument in command)):
                pids.append(int(proc.name))
    return pids


def test_a_board_reporting_other_firmware_is_not_used(tmp_path):
    # A manifest that claims the digits model but ships the MNIST-1D image: its hashes are
    # consistent on disk, so only the board's own HELLO can tell.
    fake = tmp_path / "fake"
    real = firmware.prebuilt("mps2-an386", "qute-mnist1d")
    shutil.copytree(real.directory, fake)
    data = json.loads((fake / "manifest.json").read_text())
    data.update(model="qute-digits", model_sha256=firmware.prebuilt("mps2-an386", "qute-digits").model_sha256)
    (fake / "manifest.json").write_text(json.dumps(data))
    lab = write_lab(tmp_path, manifests={("mps2-an386", "qute-digits"): fake / "manifest.json"})
    result = hil("run", lab)
    assert result.returncode == INFRASTRUCTURE, result.stdout + result.stderr
    assert re.search(r"an386-digits.*identity", result.stdout)
    assert "reflash the board" in result.stdout
    records = read_records(run_dir_of(tmp_path))
    assert records and {r.slot for r in records} == {"an500-mnist1d"}


def test_a_board_locked_by_another_run_is_not_shared(tmp_path):
    lab = write_lab(tmp_path)
    (spec,) = [b for b in load_lab(lab).boards if b.slot == "an500-mnist1d"]
    lock = Lock(lock_name(spec, lab))
    assert lock.try_acquire(f"pid {os.getpid()} (another test run)") is None
    try:
        result = hil("run", lab)
    finally:
        lock.release()
    assert result.returncode == INFRASTRUCTURE
    (line,) = result.stderr.strip().splitlines()
    assert line == (f"hil: error: an500-mnist1d: board is in use by pid {os.getpid()} (another test run) "
                    f"(lock {lock.path}); wait for that run to end")
    assert not (tmp_path / "results").exists(), "the refused run left a run directory"


def test_two_runs_started_together_one_gets_the_whole_rack_the_other_nothing(tmp_path):
    lab = write_lab(tmp_path)
    env = {**os.environ, "NO_COLOR": "1", "HIL_LOCK_DIR": str(tmp_path / "locks")}
    for pair in range(1, 4):
        runs = [subprocess.Popen([sys.executable, "-m", "hil.cli", "run", str(lab), "--json"], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
        outcomes = {run.pid: (*run.communicate(timeout=300), run.returncode) for run in runs}  # pid: out, err, code
        assert sorted(code for _out, _err, code in outcomes.values()) == [PASS, INFRASTRUCTURE], outcomes
        (winner,) = [pid for pid, (_out, _err, code) in outcomes.items() if code == PASS]
        (loser,) = set(outcomes) - {winner}
        (line,) = outcomes[loser][1].strip().splitlines()
        assert re.fullmatch(rf"hil: error: ([\w-]+): board is in use by pid {winner} \(\1\) \(lock \S+\); "
                            "wait for that run to end", line), line
        summary = json.loads(outcomes[winner][0])
        assert sorted(summary["boards"]) == sorted(BOARDS), "the winner did not get the whole rack"
        run_dirs = sorted(p.name for p in (tmp_path / "results").iterdir() if p.is_dir())
        with sqlite3.connect(tmp_path / "results" / "catalog.sqlite") as db:
            catalog = sorted(row[0] for row in db.execute("SELECT id FROM runs"))
        assert len(run_dirs) == pair, "the refused run left a run directory"
        assert Path(summary["run_dir"]).name in run_dirs
        assert catalog == run_dirs, "the refused run left a catalog row"


def test_run_needs_a_lab_or_a_run_to_resume(tmp_path):
    result = hil("run")
    assert result.returncode == USAGE and "give a lab file" in result.stderr
    result = hil("run", "--resume", tmp_path)
    assert result.returncode == BAD_INPUT and "not a run directory" in result.stderr


def test_the_committed_lab_passes_on_four_emulated_boards():
    """The README's first command: every record of every board reconciled exactly."""
    result = hil("run", REPO_ROOT / "labs.yaml", "--json", cwd=REPO_ROOT, timeout=900)
    assert result.returncode == PASS, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    assert len(summary["boards"]) == 4
    assert all(s["exact"] == s["samples"] == s["expected"] for s in summary["summaries"])
    shutil.rmtree(summary["run_dir"])


@pytest.mark.parametrize("signum, group", [(signal.SIGTERM, False), (signal.SIGINT, False),
                                           (signal.SIGINT, True)])  # Ctrl-C in a terminal: the whole group
def test_a_stopped_run_stops_every_emulator_and_keeps_its_records(tmp_path, signum, group):
    lab = write_lab(tmp_path, samples=120)
    owner = subprocess.Popen([sys.executable, "-m", "hil.cli", "run", str(lab)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env={**os.environ, "NO_COLOR": "1"},
                             start_new_session=group)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        run_dirs = [p for p in (tmp_path / "results").glob("*") if p.is_dir()]
        if run_dirs and len(read_records(run_dirs[0])) >= 10:
            break
        time.sleep(0.1)
    emulators = [pid for slot in BOARDS for pid in qemu_pids(slot, parent=owner.pid)]
    assert len(emulators) == 2
    if group:  # the emulators and units get it too: they are hil's to stop, and print nothing
        os.killpg(owner.pid, signum)
    else:
        owner.send_signal(signum)
    _stdout, stderr = owner.communicate(timeout=60)
    assert owner.returncode == 130, stderr
    # One line, with the run and how to go on: no traceback from hil or from any child.
    assert stderr.strip().splitlines()[-1] == f"hil: interrupted; `hil run --resume {run_dirs[0]}` completes it"
    assert "Traceback" not in stderr, stderr
    assert not [pid for pid in emulators if Path(f"/proc/{pid}").exists()], "an emulator outlived the run"
    kept = read_records(run_dirs[0])
    assert 10 <= len(kept) < 2 * 3 * 120  # it stopped at the next sample, not at the end of the test sets
    # What was answered was measured before the boards went down: nothing for the resume to measure again.
    measured = {(m.slot, m.testset, m.index) for m in read_measurements(run_dirs[0]) if m.method != "unmeasured"}
    assert len(measured) >= len(kept) - 4, (len(measured), len(kept))
    assert json.loads((run_dirs[0] / "run.json").read_text())["status"] == "interrupted"
    resumed = hil("run", "--resume", run_dirs[0], "--json")
    assert resumed.returncode == PASS, resumed.stdout + resumed.stderr
    assert len(read_records(run_dirs[0])) == 2 * 3 * 120
    assert all(p["unmeasured"] == 0 for p in json.loads(resumed.stdout)["performance"]), resumed.stdout


def test_a_garbled_request_is_retried_after_a_resync(tmp_path):
    import dataclasses

    from hil.lab.load import load_lab
    from hil.run.rack import Rack
    from hil.run.stream import ask

    lab = load_lab(write_lab(tmp_path, boards={"an386-digits": BOARDS["an386-digits"]}))
    tau = lab.run.threshold_q15
    sample = lab.models["qute-digits"].testsets[0].inputs[0].tobytes()
    with Rack(lab, ["an386-digits"], tau, tmp_path / "traces") as rack:
        (board,) = rack.ready
        clean, attempts = ask(board, sample, tau, retries=2)
        assert attempts == 1
        board.link.send_raw(b"\x05\x01\x02")  # half a frame: the device reads the next request as its tail
        again, attempts = ask(board, sample, tau, retries=2)
        # The same answer, in the next busy window: the garbled request ran nothing.
        assert attempts == 2 and again == dataclasses.replace(clean, window=clean.window + 1)
        assert board.alive()
