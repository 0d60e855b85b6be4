"""Putting an image on a board: the Flasher edge, and flashing through a debug probe with pyOCD.

A Flasher puts a verified image on one board and says what it wrote where (a FlashReport, in
run.json as boards.<slot>.flash for every board). PyocdFlasher here flashes every board through
its debug probe: a physical board's, or an emulated board's emulated probe (hil/hw/emulated/loader.py
wraps it and hands what the probe's flash holds to QEMU).

Flashing with pyOCD goes through three layers, as pyOCD has them:
- probe: a DebugProbe found by its unique id: a USB probe (CMSIS-DAP, ST-Link, J-Link; its id is its
  USB serial number) or a probe server (`pyocd server`, hil.hw.emulated.probe) at `remote:HOST:PORT`.
  The id is matched EXACTLY: pyOCD's own `unique_id` filter is a case-insensitive substring match,
  so "ABC" would pick probe "xABC1" or refuse because two probes contain it.
- target: a Session on that probe with `target_override` builds the target from the wire up
  (debug port -> access port -> ROM table -> core) and halts the core.
- flash: FileProgrammer writes the raw image at `base_address` through the target's memory map (a
  flash algorithm for flash regions, plain writes for RAM). pyOCD does not verify, so the image is
  read back and compared, then the target is reset (a TransferError during the reset is tolerated,
  as `pyocd load` does: the reset can drop debug access for a moment).

Nothing unverified is flashed: the image's sha256 is checked against the manifest before any probe
is touched, and again by the flashing process on the very bytes it programs.

One process per flash: pyOCD keeps process-wide state (Session chdirs to its project_dir, a
class-level "current session", global logging, a progress bar on stdout), so two boards flashed
from one process, or the orchestrator itself, would see each other's state. Each flash runs in
`python -m hil.hw.flasher --child` (subprocess, not multiprocessing): a clean interpreter that does not
depend on how the parent was started, with the job on stdin, one JSON result line on its own
stdout, pyOCD's logs and prints captured from stderr, and a timeout that is one `kill()`.
A per-probe lock (`flash-<id>.lock` in the lock folder, hil/hw/locks.py) serialises flashes of one
probe across threads and processes; a second flash waits for the first (within its timeout).
The flashing process never outlives us: it dies with us (hil/hw/children.py), and it inherits the
locked descriptor, so the probe stays locked until the flasher itself is gone, even if we are
killed (SIGKILL) while it flashes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from hil.hw.children import child_env, die_with_parent
from hil.errors import BadInput, HilError
from hil.hw.locks import Lock

if TYPE_CHECKING:  # not imported at run time: the flashing child process starts lean
    from hil.firmware.build import FirmwareManifest

log = logging.getLogger(__name__)

# A glitch on the wire, a cell that did not take its value or a program error may pass on a second try; a
# wrong id or target will not. A flash error that persists (write protection) fails again, as a flash error.
RETRYABLE = {"transfer", "verify", "flash"}


class ProbeError(HilError):
    """A probe, its target or a flash failed (exit code 2: infrastructure)."""


class ProbeNotFound(ProbeError):
    """No probe, or more than one, has the unique id asked for."""


class VerifyFailed(ProbeError):
    """The target's memory does not hold the image after flashing."""


class FlashFailed(ProbeError):
    """The flash controller refused an erase or a program (pyOCD's FlashFailure): an error of the flash,
    never reported as a timeout or a hang."""


class FlashTimeout(ProbeError):
    """The flash did not finish in time; its process was killed."""


# The child reports a failure as a kind; the kind picks the exception (all but bad_input exit with code 2).
_ERRORS: dict[str, type[HilError]] = {"bad_input": BadInput, "not_found": ProbeNotFound, "verify": VerifyFailed,
                                      "flash": FlashFailed}


class FlashMethod(StrEnum):
    PYOCD = "pyocd"  # written through a debug probe


@dataclass(frozen=True)
class FlashReport:
    """What was put on a board where, for the run's provenance (`to_dict()` is JSON)."""

    method: StrEnum  # a FlashMethod; test support (hil.testing) names its own, outside the product's set
    target: str  # pyOCD's target, or QEMU's machine
    image: str  # the file handed to the flasher: firmware.bin (pyOCD) or firmware.elf (QEMU)
    image_sha256: str  # of that file
    bytes: int  # of the image in the board's memory, from base_address on (firmware.bin's size)
    base_address: int
    verified: bool  # the board's memory read back and compared with firmware.bin, byte for byte
    seconds: float  # the whole call: for pyOCD, waiting for the probe's lock and all attempts
    attempts: int
    probe: str | None = None  # pyOCD: the unique id asked for, matched exactly
    probe_description: str | None = None
    served_probe: str | None = None  # remote probes: the unique id the probe server reports
    reset_error: str | None = None  # pyOCD: a TransferError during the reset, tolerated
    failed_attempts: tuple[str, ...] = ()  # why each attempt before the one that worked failed, one line each

    def to_dict(self) -> dict:
        return {**asdict(self), "method": str(self.method)}


class Flasher(ABC):
    """Puts an image on a board, verified, and reports what it wrote where."""

    @abstractmethod
    def flash(self, manifest: FirmwareManifest) -> FlashReport:
        """Write the manifest's image (already checked against its hashes) and read it back;
        raises a HilError (ProbeError, BadInput, ...) naming the board when it cannot."""


class _HasUniqueId(Protocol):
    @property
    def unique_id(self) -> str: ...


P = TypeVar("P", bound=_HasUniqueId)


def select_probe(probes: Sequence[P], probe_id: str) -> P:
    """The one probe whose unique id is exactly `probe_id` (case and all), or ProbeNotFound."""
    matches = [probe for probe in probes if probe.unique_id == probe_id]
    if len(matches) != 1:
        present = ", ".join(sorted(probe.unique_id for probe in probes)) or "none"
        what = "is not connected" if not matches else f"matches {len(matches)} probes"
        raise ProbeNotFound(f"probe {probe_id}: {what} (probes present: {present}); "
                            "check the board's probe unique_id in the lab file (matched exactly) and the USB cable")
    return matches[0]


def parse_remote(probe_id: str) -> tuple[str, int] | None:
    """(host, port) for `remote:HOST:PORT`, None for a local probe id."""
    if not probe_id.startswith("remote:"):
        return None
    host, _, port = probe_id.removeprefix("remote:").rpartition(":")
    if not host or not port.isdigit():
        raise BadInput(f"probe {probe_id}: a remote probe is written remote:HOST:PORT; fix the lab file")
    return host, int(port)


@contextmanager
def probe_lock(probe_id: str, deadline: float) -> Iterator[Lock]:
    """Hold `flash-<id>.lock` exclusively, waiting until `deadline` (time.monotonic) at most."""
    lock = Lock("flash-" + probe_id)
    while (holder := lock.try_acquire(f"pid {os.getpid()}")) is not None:
        if time.monotonic() >= deadline:
            raise ProbeError(f"probe {probe_id}: still being flashed by {holder} (lock {lock.path}); "
                             "wait for that flash to end or raise the timeout")
        time.sleep(0.05)
    try:
        yield lock
    finally:
        lock.release()


def check_image(image: Path, image_sha256: str) -> bytes:
    try:
        data = image.read_bytes()
    except OSError as error:
        raise BadInput(f"{image}: cannot read the image ({error.strerror}); rebuild the firmware") from None
    actual = hashlib.sha256(data).hexdigest()
    if actual != image_sha256:
        raise BadInput(f"{image}: sha256 {actual[:12]}... does not match the manifest's {image_sha256[:12]}...; "
                       "rebuild the firmware or restore the image its manifest describes")
    if not data:
        raise BadInput(f"{image}: the image is empty; rebuild the firmware")
    return data


def flash_image(probe_id: str, target: str, image: Path, image_sha256: str, *, base_address: int = 0,
                timeout_s: float = 120.0, retries: int = 1, expect_served_id: str | None = None) -> FlashReport:
    """Flash a raw binary image at `base_address`, read it back, reset the target.

    `retries` more attempts follow a transfer error, a flash error or a failed verify (each kept in the
    report's `failed_attempts`). `timeout_s` bounds the whole
    call, waiting for the probe's lock included. For a remote probe, `expect_served_id` is the
    unique id its server must report (checked before anything is written).
    """
    started = time.monotonic()
    deadline = started + timeout_s
    image = Path(image)
    check_image(image, image_sha256)  # before any probe is opened
    parse_remote(probe_id)
    job = {"probe_id": probe_id, "target": target, "image": str(image.resolve()), "image_sha256": image_sha256,
           "base_address": base_address, "expect_served_id": expect_served_id}
    failed: list[str] = []
    with probe_lock(probe_id, deadline) as lock:
        for attempt in range(1, retries + 2):
            result = _run_child({**job, "reset_first": attempt > 1}, deadline, timeout_s, lock)
            if result["ok"]:
                return FlashReport(**result["report"], method=FlashMethod.PYOCD,
                                   seconds=round(time.monotonic() - started, 3), attempts=attempt,
                                   failed_attempts=tuple(failed))
            if result["kind"] not in RETRYABLE or attempt > retries:
                tries = f" (each of {attempt} attempts failed)" if failed else ""
                raise _ERRORS.get(result["kind"], ProbeError)(result["message"] + tries)
            failed.append(result["message"])
            log.warning("%s; retrying (attempt %d)", result["message"], attempt + 1)
    raise AssertionError("unreachable")


def reset_target(probe_id: str, target: str, timeout_s: float = 30.0) -> None:
    """A hardware reset through the probe (the recovery ladder's second step), in its own pyOCD process
    under the probe's lock, as a flash is; ProbeError or FlashTimeout if it cannot be done."""
    deadline = time.monotonic() + timeout_s
    job = {"action": "reset", "probe_id": probe_id, "target": target, "image": "", "expect_served_id": None}
    with probe_lock(probe_id, deadline) as lock:
        result = _run_child(job, deadline, timeout_s, lock)
    if not result["ok"]:
        raise _ERRORS.get(result["kind"], ProbeError)(result["message"])


class PyocdFlasher(Flasher):
    """A board behind a debug probe: firmware.bin flashed at the manifest's load address, read back, reset."""

    def __init__(self, probe_id: str, target: str):
        self.probe_id, self.target = probe_id, target

    def flash(self, manifest: FirmwareManifest) -> FlashReport:
        return flash_image(self.probe_id, self.target, manifest.bin, manifest.image_sha256,
                           base_address=manifest.load_address)

    def reset(self) -> None:
        reset_target(self.probe_id, self.target)


def _run_child(job: dict[str, Any], deadline: float, timeout_s: float, lock: Lock) -> dict[str, Any]:
    # The child dies with us and holds the probe's lock with us (its inherited descriptor): killed,
    # we leave neither a flasher running nor a probe unlocked under one.
    process = subprocess.Popen([sys.executable, "-m", "hil.hw.flasher", "--child"], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env(),
                               preexec_fn=die_with_parent, pass_fds=(lock.fd,))
    try:
        job = {**job, "parent_pid": os.getpid(), "log_level": log.getEffectiveLevel()}  # the child logs as we do
        out, err = process.communicate(json.dumps(job),
                                       timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        doing = "resetting the target" if job.get("action") == "reset" else f"flashing {Path(job['image']).name}"
        raise FlashTimeout(f"probe {job['probe_id']}: {doing} did not finish within "
                           f"{timeout_s:g} s (stopped it); replug the probe, power-cycle the board and retry") from None
    finally:
        if process.poll() is None:  # interrupted: never leave a flasher running
            process.kill()
            process.wait()
    log.debug("flash process for %s (exit %s) logged:\n%s", job["probe_id"], process.returncode, err)
    try:
        result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        return result
    except (IndexError, ValueError):
        last = (err.strip().splitlines() or ["no output"])[-1]
        return {"ok": False, "kind": "internal", "message": f"probe {job['probe_id']}: the flash process died "
                f"(exit {process.returncode}: {last[:200]}); rerun with -vv and report it"}


# --- the child process: everything below runs with pyOCD imported, one flash per process ---

class _Failure(Exception):
    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind, self.message = kind, message


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())[:240] or type(error).__name__


def _classify(error: Exception, stage: str, job: dict[str, Any]) -> _Failure:
    """A pyOCD exception as a kind (which decides the exit code and retries) and a one-line message."""
    from pyocd.core import exceptions

    probe, image = f"probe {job['probe_id']}", Path(job["image"]).name
    text = _one_line(error)
    if isinstance(error, exceptions.TargetSupportError):
        return _Failure("target", f"{probe}: pyOCD does not know target {job['target']!r}; fix the board's "
                        "probe.target in the lab file (`pyocd list --targets`) or install its pack")
    if isinstance(error, exceptions.FlashFailure):
        where = f" at {error.address:#010x}" if error.address is not None else ""
        return _Failure("flash", f"{probe}: flash programming failed{where} while {stage} ({text}); check the "
                        f"chip's write protection (option bytes), erase it (`pyocd erase --chip -t {job['target']}`) "
                        "and reflash")
    if isinstance(error, exceptions.TransferError):
        return _Failure("transfer", f"{probe}: debug transfer failed while {stage} ({text}); "
                        "check the debug cable and the board's power, then retry")
    if isinstance(error, exceptions.ProbeError):
        return _Failure("probe", f"{probe}: probe error while {stage} ({text}); replug the probe and retry")
    if isinstance(error, exceptions.Error) and "Target not detected" in str(error):
        return _Failure("no_target", f"{probe}: target not detected (no answer over SWD); "
                        "check the board's power and the debug cable")
    if isinstance(error, OSError):
        return _Failure("probe", f"{probe}: cannot reach the probe ({text}); check that its server runs there")
    if isinstance(error, ValueError) and stage == "programming":  # pyOCD: no memory region for the address
        return _Failure("bad_input", f"{image}: does not fit target {job['target']} at {job['base_address']:#010x} "
                        f"({text}); check the image's load address")
    return _Failure("internal", f"{probe}: unexpected {type(error).__name__} while {stage} ({text}); "
                    "rerun with -vv and report it")


def _open_probe(probe_id: str) -> Any:
    from pyocd.core.helpers import ConnectHelper
    from pyocd.probe.tcp_client_probe import TCPClientProbe

    if remote := parse_remote(probe_id):
        host, port = remote
        return TCPClientProbe(f"{host}:{port}")  # as pyOCD's aggregator builds it: nothing to enumerate
    return select_probe(ConnectHelper.get_all_connected_probes(blocking=False), probe_id)


def _flash_in_this_process(job: dict[str, Any]) -> dict[str, Any]:
    from pyocd.core.exceptions import TransferError
    from pyocd.core.session import Session
    from pyocd.flash.file_programmer import FileProgrammer

    probe_id, base = job["probe_id"], job["base_address"]
    image = Path(job["image"])
    data = image.read_bytes()
    if hashlib.sha256(data).hexdigest() != job["image_sha256"]:  # changed since the parent checked it
        raise _Failure("bad_input", f"{image}: changed while being flashed; rebuild the firmware and retry")
    stage = "opening the probe"
    try:
        with tempfile.TemporaryDirectory(prefix="hil-flash-") as project_dir:
            copy = Path(project_dir) / "image.bin"  # program exactly the bytes that were hashed
            copy.write_bytes(data)
            probe = _open_probe(probe_id)
            # Not resumed when the session ends: a flash that failed leaves the core halted, so no unverified
            # byte runs; a flash that verified has reset the target to run by then.
            options = {"target_override": job["target"], "project_dir": project_dir, "no_config": True,
                       "hide_programming_progress": True, "resume_on_disconnect": False}
            session = Session(probe, options=options)
            stage = "connecting to the target"
            with session:
                # pyOCD's client has no public call for the served probe's id; its server answers `readprop`.
                served = probe._read_property("unique_id") if probe_id.startswith("remote:") else None
                description = str(probe.description)  # a remote probe answers only while open
                expected = job["expect_served_id"]
                if expected is not None and served != expected:
                    raise _Failure("not_found", f"probe {probe_id}: the server there serves probe {served!r}, "
                                   f"not {expected!r}; check the probe address in the lab file")
                if job.get("reset_first"):
                    # A retry starts from a system reset: a flash operation that failed can leave the flash
                    # controller unlocked, and the algorithm's unlock keys, written again, would lock it up
                    # until the next reset (RM0394 3.3.5); the reset also ends whatever the core was doing.
                    stage = "resetting before the retry"
                    session.target.reset_and_halt()
                stage = "programming"
                FileProgrammer(session).program(str(copy), file_format="bin", base_address=base)
                stage = "verifying"
                back = bytes(session.target.read_memory_block8(base, len(data)))
                if back != data:
                    first = next((i for i, (a, b) in enumerate(zip(back, data)) if a != b), len(back))
                    raise _Failure("verify", f"probe {probe_id}: read-back verify failed at {base + first:#010x} "
                                   f"after flashing {image.name}; reflash or check the board's power")
                stage = "resetting"
                reset_error = None
                try:
                    session.target.reset()
                except TransferError as error:  # the reset may drop debug access for a moment
                    reset_error = _one_line(error)
                stage = "closing the session"
        return {"probe": probe_id, "probe_description": description, "served_probe": served,
                "target": job["target"], "image": image.name, "image_sha256": job["image_sha256"],
                "bytes": len(data), "base_address": base, "verified": True, "reset_error": reset_error}
    except _Failure:
        raise
    except ProbeNotFound as error:
        raise _Failure("not_found", str(error)) from None
    except Exception as error:  # everything pyOCD raises becomes one line with a kind
        raise _classify(error, stage, job) from error


def _reset_in_this_process(job: dict[str, Any]) -> dict[str, Any]:
    from pyocd.core.session import Session

    stage = "opening the probe"
    try:
        with tempfile.TemporaryDirectory(prefix="hil-reset-") as project_dir:
            probe = _open_probe(job["probe_id"])
            options = {"target_override": job["target"], "project_dir": project_dir, "no_config": True}
            stage = "connecting to the target"
            with Session(probe, options=options) as session:
                stage = "resetting"
                session.target.reset()
        return {"probe": job["probe_id"], "target": job["target"]}
    except ProbeNotFound as error:
        raise _Failure("not_found", str(error)) from None
    except Exception as error:  # everything pyOCD raises becomes one line with a kind
        raise _classify(error, stage, job) from error


def _child() -> int:
    results = os.fdopen(os.dup(1), "w")  # our result channel ...
    os.dup2(2, 1)  # ... while pyOCD's prints (wait messages, progress bars) go to the captured stderr
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    job = json.load(sys.stdin)
    logging.getLogger().setLevel(min(logging.WARNING, job["log_level"]))  # pyOCD's debug log with `hil -vv`
    if os.getppid() != job["parent_pid"]:  # gone, maybe before die_with_parent could tie us to it: flash nothing
        return 1
    try:
        run = _reset_in_this_process if job.get("action") == "reset" else _flash_in_this_process
        outcome = {"ok": True, "report": run(job)}
    except _Failure as failure:
        outcome = {"ok": False, "kind": failure.kind, "message": failure.message}
    results.write(json.dumps(outcome) + "\n")
    results.flush()
    return 0


def main(argv: list[str] | None = None) -> int:
    if argv is None and sys.argv[1:] == ["--child"]:
        return _child()
    parser = argparse.ArgumentParser(description="Flash a raw image through a debug probe, verify it, reset.")
    parser.add_argument("image", type=Path)
    parser.add_argument("--probe", required=True, help="the probe's exact unique id, or remote:HOST:PORT")
    parser.add_argument("--target", required=True, help="pyOCD target name, e.g. cortex_m or stm32l432kc")
    parser.add_argument("--sha256", required=True, help="the image's sha256 from its manifest")
    parser.add_argument("--base-address", type=lambda s: int(s, 0), default=0)
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args(argv)
    try:
        report = flash_image(args.probe, args.target, args.image, args.sha256, base_address=args.base_address,
                             timeout_s=args.timeout)
    except HilError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    print(json.dumps(report.to_dict(), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
