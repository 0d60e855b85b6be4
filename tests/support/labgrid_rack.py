"""A labgrid lab on localhost, all real processes: a labgrid coordinator; exporters (labgrid-exporter, which
runs ser2net for each serial port of a place acquired), each exporting served emulated boards (`hil board
serve`: the probe on TCP, the VCP on a pty); and places made with labgrid-client, as a lab admin makes them.

Each exporter reads labs/labgrid/exporter.yaml (the example the docs ship), which takes every board's resource group
from its exporter.yaml.d/ drop-ins, written by `hil board serve --exporter-group`.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tests.support.labs import REPO_ROOT

BIN = Path(sys.executable).parent  # labgrid's commands sit beside the venv's python
EXAMPLE_EXPORTER = REPO_ROOT / "labs" / "labgrid" / "exporter.yaml"
TAGS = {"board": "nucleo-l432kc", "rack": "ci"}


def labgrid_available() -> bool:
    return ((BIN / "labgrid-coordinator").exists() and shutil.which("qemu-system-arm") is not None
            and (shutil.which("ser2net") or os.path.exists("/usr/sbin/ser2net")) is not None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_port(port: int, process: subprocess.Popen, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{what} exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{what}: nothing listens on {port} after {timeout} s")


@dataclass
class Exporter:
    name: str
    folder: Path
    boards: list[str]  # its groups, one per served board
    process: subprocess.Popen | None = None


@dataclass
class LabgridRack:
    """Use as a context manager; `coordinator` is HOST:PORT, `places` the place names, one per served board."""

    folder: Path
    exporters: list[Exporter] = field(default_factory=list)
    served: dict[str, subprocess.Popen] = field(default_factory=dict)  # group -> its `hil board serve`
    places: list[str] = field(default_factory=list)

    def __post_init__(self):
        self.port = free_port()
        self.coordinator = f"127.0.0.1:{self.port}"
        self._coordinator: subprocess.Popen | None = None

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "LG_COORDINATOR": self.coordinator, "NO_COLOR": "1"}

    def start(self, layout: dict[str, list[str]], monitored: frozenset[str] = frozenset()) -> LabgridRack:
        """`layout`: exporter name -> its boards' group names. Places are named after the groups. The boards
        of `monitored` have an emulated measurement unit on their pins, exported as the place's `monitor`."""
        (self.folder / "coordinator").mkdir(parents=True)
        self._coordinator = subprocess.Popen([str(BIN / "labgrid-coordinator"), "-l", self.coordinator],
                                             cwd=self.folder / "coordinator", stdout=subprocess.DEVNULL,
                                             stderr=open(self.folder / "coordinator.log", "w"))
        _wait_for_port(self.port, self._coordinator, "labgrid-coordinator")
        for name, groups in layout.items():
            exporter = Exporter(name, self.folder / name, groups)
            (exporter.folder / "exporter.yaml.d").mkdir(parents=True)
            shutil.copy(EXAMPLE_EXPORTER, exporter.folder / "exporter.yaml")
            self.exporters.append(exporter)
            for group in groups:
                self.serve(exporter, group, group in monitored)
        for exporter in self.exporters:
            self.start_exporter(exporter)
        for exporter in self.exporters:
            for group in exporter.boards:
                self.client("-p", group, "create")
                self.client("-p", group, "add-match", f"{exporter.name}/{group}/*")
                self.client("-p", group, "set-tags", *(f"{k}={v}" for k, v in TAGS.items()))
                self.places.append(group)
        return self

    def serve(self, exporter: Exporter, group: str, monitor: bool = False) -> None:
        unit = ["--monitor", "--monitor-truth", str(self.folder / f"{group}.truth.jsonl")] if monitor else []
        process = subprocess.Popen(
            [sys.executable, "-m", "hil.cli", "board", "serve", "--unique-id", group, "--group", group,
             "--pty-link", str(exporter.folder / f"{group}.pty"),
             "--exporter-group", str(exporter.folder / "exporter.yaml.d" / f"{group}.yaml"), *unit],
            stdout=subprocess.PIPE, stderr=open(self.folder / f"{group}.log", "w"), text=True)
        line = process.stdout.readline()
        assert line.startswith("ready: "), f"hil board serve {group}: {line!r}"
        self.served[group] = process

    def start_exporter(self, exporter: Exporter) -> None:
        """In a session of its own, so that `kill_exporter` takes its ser2nets with it, as a host going down does."""
        exporter.process = subprocess.Popen(
            [str(BIN / "labgrid-exporter"), "-c", self.coordinator, "-n", exporter.name, "--hostname", "127.0.0.1",
             str(exporter.folder / "exporter.yaml")], cwd=exporter.folder, stdout=subprocess.DEVNULL,
            stderr=open(exporter.folder / "exporter.log", "a"), start_new_session=True)
        deadline = time.monotonic() + 30
        while not all(self._published(exporter, group) for group in exporter.boards):
            if exporter.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"exporter {exporter.name}: its groups are not published; "
                                     f"{(exporter.folder / 'exporter.log').read_text()[-2000:]}")
            time.sleep(0.2)

    def _published(self, exporter: Exporter, group: str) -> bool:
        shown = self.client("resources", check=False).stdout
        return f"{exporter.name}/{group}/NetworkService" in shown.split()

    def kill_exporter(self, exporter: Exporter) -> None:
        os.killpg(exporter.process.pid, signal.SIGKILL)
        exporter.process.wait()
        exporter.process = None

    def client(self, *args: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
        done = subprocess.run([str(BIN / "labgrid-client"), "-x", self.coordinator, *args], capture_output=True,
                              text=True, env=env or self.env, timeout=60)
        if check and done.returncode != 0:
            raise AssertionError(f"labgrid-client {' '.join(args)}: {done.stderr.strip()}")
        return done

    def __enter__(self) -> LabgridRack:
        return self

    def __exit__(self, *exc) -> None:
        for exporter in self.exporters:
            if exporter.process is not None:
                # Its ser2nets are in its session: a SIGKILL of the group after its own SIGTERM takes them too.
                exporter.process.terminate()
                try:
                    exporter.process.wait(10)
                except subprocess.TimeoutExpired:
                    exporter.process.kill()
                    exporter.process.wait()
                try:
                    os.killpg(exporter.process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for process in self.served.values():
            process.terminate()
        for process in self.served.values():
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._coordinator is not None:
            self._coordinator.terminate()
            self._coordinator.wait(10)


def place_lab(lab: Path, coordinator: str, boards: dict[str, str | dict], metered: dict[str, dict] | None = None,
              ) -> Path:
    """Rewrite a lab (tests.support.labs.write_lab) so that these slots are on labgrid places: slot -> a place
    name, or {"tags": {...}, "count": N}; `metered`: slot -> its unit's calibration (`monitor:`)."""
    data = yaml.safe_load(lab.read_text())
    kept = [b for b in data["boards"] if b["slot"] not in boards]
    template = next(b for b in data["boards"] if b["slot"] in boards)
    placed = [{"slot": slot, "kind": template["kind"], "model": template["model"], "place": place,
               **({"monitor": metered[slot]} if slot in (metered or {}) else {})} for slot, place in boards.items()]
    data["boards"] = kept + placed
    data["labgrid"] = {"coordinator": coordinator}
    lab.write_text(yaml.safe_dump(data, sort_keys=False))
    return lab
