"""A physical bench as far as one can exist here: a Nucleo-L432KC stand-in on a "USB cable", and the lab of
it as physical board `bench-1` (flashed through its probe, its serial port a path or a URL in front of one)
beside an emulated board.

`Nucleo` is hil.hw.emulated.served's ServedBoard of kind nucleo-l432kc (what `hil board serve` runs): an
emulated ST-LINK (EmulatedProbe), a pty as its USB serial port, and QEMU booting what the probe flashed.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import yaml

from hil.hw.emulated.served import ServedBoard
from hil.hw.kinds import BOARD_KINDS

from tests.support.labs import run_dir_of, write_lab

KIND, MODEL = "nucleo-l432kc", "qute-digits"
FLASH = BOARD_KINDS[KIND].flash
INFRASTRUCTURE = 2  # hil run's exit code for a board, probe or unit that failed


class Nucleo(ServedBoard):
    """A Nucleo-L432KC on a USB cable; use as a context manager. `probe.address` is its ST-LINK, `port` its
    serial port, `boots` how often its MCU has booted."""

    def __init__(self, unique_id: str, *, wire: bool = False, **faults: int):
        super().__init__(unique_id, KIND, wire=wire, **faults)


BESIDE = {"an500-mnist1d": ("mps2-an500", "qute-mnist1d")}  # the emulated board the bench shares its lab with


def physical_lab(tmp_path: Path, probe: str, port: str, beside: dict = BESIDE, samples: int = 10) -> Path:
    """A lab of the `beside` emulated boards and bench-1, a physical Nucleo-L432KC on `port` flashed through
    `probe` (the image at 0x0800_0000, under pyOCD's target stm32l432kc)."""
    lab = write_lab(tmp_path, boards={**beside, "bench-1": (KIND, MODEL)}, samples=samples)
    data = yaml.safe_load(lab.read_text())
    bench = next(b for b in data["boards"] if b["slot"] == "bench-1")
    del bench["emulated"]
    bench.update(probe={"unique_id": probe, "target": BOARD_KINDS[KIND].pyocd_target}, serial={"port": port})
    lab.write_text(yaml.safe_dump(data, sort_keys=False))
    return lab


def with_monitor(lab: Path, port: str) -> Path:
    data = yaml.safe_load(lab.read_text())
    profile = BOARD_KINDS[KIND].power
    next(b for b in data["boards"] if b["slot"] == "bench-1")["monitor"] = {
        "port": port, "shunt_ohms": profile.shunt_ohms, "max_current_a": profile.max_current_a}
    lab.write_text(yaml.safe_dump(data, sort_keys=False))
    return lab


def unit_stopped(tmp_path: Path, result: subprocess.CompletedProcess, reason: str) -> list[dict]:
    """Check a `hil run --json` whose bench-1 unit stopped mid-run: exit 2, its one-line monitor failures
    naming `reason`, all 30 of its records kept and journaled unmeasured with that reason. Returns every
    board's measurements."""
    assert result.returncode == INFRASTRUCTURE, result.stderr[-3000:]
    failures = json.loads(result.stdout)["failures"]
    assert failures and all(f["slot"] == "bench-1" and f["stage"] == "monitor" for f in failures), failures
    assert reason in failures[0]["reason"] and "\n" not in failures[0]["reason"], failures
    run_dir = run_dir_of(tmp_path)
    records = [json.loads(line) for line in (run_dir / "records.jsonl").read_text().splitlines()]
    measured = [json.loads(line) for line in (run_dir / "measurements.jsonl").read_text().splitlines()]
    assert sum(r["slot"] == "bench-1" for r in records) == 30
    # The board is metered once its answers are in (hil/run/metering.py); by then the unit is gone.
    bench = [m for m in measured if m["slot"] == "bench-1"]
    assert len(bench) == 30 and all(m["method"] == "unmeasured" and reason in m["reason"] for m in bench), bench
    return measured
