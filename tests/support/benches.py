"""A physical bench as far as one can exist here: the lab of a physical board `bench-1` (its probe
hil.hw.emulated.probe, its serial port a QEMU pty or a URL in front of one) beside an emulated board."""

from pathlib import Path

import yaml

from hil.hw.kinds import BOARD_KINDS

from tests.support.labs import write_lab

KIND, MODEL = "mps2-an386", "qute-digits"


BESIDE = {"an500-mnist1d": ("mps2-an500", "qute-mnist1d")}  # the emulated board the bench shares its lab with


def physical_lab(tmp_path: Path, probe: str, port: str, beside: dict = BESIDE, samples: int = 10) -> Path:
    """A lab of the `beside` emulated boards and bench-1, a physical board on `port` flashed through `probe`."""
    lab = write_lab(tmp_path, boards={**beside, "bench-1": (KIND, MODEL)}, samples=samples)
    data = yaml.safe_load(lab.read_text())
    bench = next(b for b in data["boards"] if b["slot"] == "bench-1")
    del bench["emulated"]
    bench.update(probe={"unique_id": probe, "target": "cortex_m"}, serial={"port": port})
    lab.write_text(yaml.safe_dump(data, sort_keys=False))
    return lab


def with_monitor(lab: Path, port: str) -> Path:
    data = yaml.safe_load(lab.read_text())
    profile = BOARD_KINDS[KIND].power
    next(b for b in data["boards"] if b["slot"] == "bench-1")["monitor"] = {
        "port": port, "shunt_ohms": profile.shunt_ohms, "max_current_a": profile.max_current_a}
    lab.write_text(yaml.safe_dump(data, sort_keys=False))
    return lab
