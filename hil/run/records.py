"""Per-sample device records, written the moment they arrive.

Each record is one line of JSON appended to `records.jsonl` in the run directory, handed to
the kernel before the next sample is sent, so a crash of hil, a dead board, Ctrl-C or SIGTERM
loses nothing already measured, and `hil run --resume` knows exactly what is left to do. The
journal commits (fsync) in groups: at most every COMMIT_INTERVAL_S, and on close, which a run
reaches on every stop and signal. So a power cut loses at most the last ~0.1 s, where one fsync
a line cost the run 1.14-1.24x of its time. When a run ends the journal is also written as
`records.parquet` for analysis.

Only the last line of a journal can be cut short (a crash, a full disk): reading skips it,
and opening the journal again cuts it off, so the next record starts a line of its own.
Any other bad line was not made by a crash, and reading refuses it (exit 3, file:line).
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import MISSING, asdict, dataclass, fields
from enum import StrEnum
from pathlib import Path
from typing import get_type_hints

import pyarrow as pa
import pyarrow.parquet as pq

from hil.store import results
from hil.model.decisions import Q15_ONE
from hil.errors import BadInput, ResultsUnwritable

JOURNAL = "records.jsonl"
PARQUET = "records.parquet"
MEASUREMENTS = "measurements.jsonl"
MEASUREMENTS_PARQUET = "measurements.parquet"
COMMIT_INTERVAL_S = 0.1  # the longest a written line waits for its fsync


@dataclass(frozen=True)
class Record:
    """What one board answered for one sample."""

    slot: str
    model: str
    testset: str
    index: int  # position in the test set
    label: int  # -1 for out-of-distribution samples
    tau_q15: int  # the threshold in force on the device
    exited: bool
    predicted: int
    confidence_q15: int
    cycles: int
    exit_logits: list[int]
    head_logits: list[list[int]]  # empty when the early exit answered
    attempts: int  # 1, or more when a bad frame or a timeout was retried

    @property
    def key(self) -> tuple[str, str, int]:
        return self.slot, self.testset, self.index


class MeasurementMethod(StrEnum):
    """How a measurement was taken (measurements.jsonl `method`; metrics.json `energy_method`)."""

    WINDOW = "window"  # one inference, its own busy window
    BURST = "burst"  # `count` back-to-back runs of one sample in one window (INFER_BURST), divided by `count`
    UNMEASURED = "unmeasured"  # an answer without a window of its own; `reason` says why


@dataclass(frozen=True)
class Measurement:
    """Latency and energy of one inference window, from the board's measurement unit.

    For an UNMEASURED answer the unit's figures (rise … clock_ok, energy_j, idle_w) are None."""

    slot: str
    testset: str
    index: int
    exited: bool
    method: MeasurementMethod
    count: int
    rise: int | None  # the busy window in the unit's clock: where it starts (to find it in the trace)...
    ticks: int | None  # ...and how long it is
    latency_s: float | None  # per inference, from the busy pin
    stage1_s: float | None  # from the busy pin's rise to the exit pin's: stage 1 and the exit decision
    device_latency_s: float  # per inference, from the device's cycle count
    clock_ok: bool | None  # the two agree within 1% (or a tick)
    energy_j: float | None  # per inference, above idle power; None where unmeasurable
    idle_w: float | None
    window: int | None = None  # the device's ordinal of the busy window (protocol v2); None in older runs
    reason: str | None = None  # unmeasured: why


KINDS = {JOURNAL: Record, MEASUREMENTS: Measurement}  # what each journal holds
_HINTS = {kind: get_type_hints(kind) for kind in KINDS.values()}  # each field's type
# Fields added later, with defaults: older runs' lines lack them.
_OPTIONAL = {kind: {f.name for f in fields(kind) if f.default is not MISSING} for kind in KINDS.values()}


class JournalError(BadInput):
    """A journal line no crash can make (a crash only cuts the last one): names the file and the line."""


class RecordJournal:
    """Append-only, thread-safe; every record is written (to the kernel) before `append` returns, and
    committed (fsync) within COMMIT_INTERVAL_S: by the append itself once that long has passed since
    the last commit, else by the journal's committer thread; `close` commits what is left.

    Opening cuts off a last line without its newline. A disk error (ResultsUnwritable) takes
    back the part of its line that was written, and is kept: every later append raises it
    too, so each board stops at its next record, and `failure` tells the runner."""

    def __init__(self, directory: Path, name: str = JOURNAL, commit_interval_s: float = COMMIT_INTERVAL_S):
        self.path = Path(directory) / name
        self.commit_interval_s = commit_interval_s
        self._lock = threading.Lock()
        self._written = threading.Condition(self._lock)  # notified when a line waits for its commit, and on close
        self.failure: ResultsUnwritable | None = None
        with results.on_disk(self.path):
            self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                self._end = _cut_torn_tail(self._fd)
            except OSError:
                os.close(self._fd)
                raise
        self._committed_end, self._committed_at = self._end, time.monotonic()
        self._committer = threading.Thread(target=self._commit_in_time, name=f"commit {name}", daemon=True)
        self._committer.start()

    def append(self, record: Record | Measurement) -> None:
        line = (json.dumps(asdict(record), separators=(",", ":")) + "\n").encode()
        with self._lock:
            if self.failure is not None:
                raise ResultsUnwritable(str(self.failure))
            if self._fd is None:
                raise ValueError(f"{self.path}: the journal is closed")
            try:
                written = 0
                while written < len(line):  # one write, unless the disk takes less
                    written += os.write(self._fd, line[written:])
            except OSError as error:
                _truncate(self._fd, self._end)  # no half line for the next record to be glued onto
                raise self._failed(error) from None
            self._end += len(line)
            if time.monotonic() - self._committed_at >= self.commit_interval_s:
                self._commit()
            else:
                self._written.notify()

    def _failed(self, error: OSError) -> ResultsUnwritable:
        """The kept failure for a disk error (any other OSError is raised as it is)."""
        problem = results.disk_problem(error)
        if problem is None:
            raise error
        self.failure = results.unwritable(self.path, problem)
        return ResultsUnwritable(str(self.failure))

    def _commit(self) -> None:
        """fsync what was written since the last commit; the lock is held."""
        if self._fd is None or self._committed_end == self._end:
            return
        try:
            os.fsync(self._fd)
        except OSError as error:
            raise self._failed(error) from None
        self._committed_end, self._committed_at = self._end, time.monotonic()

    def _commit_in_time(self) -> None:
        """The committer thread: a line no later append commits is committed COMMIT_INTERVAL_S after the last commit."""
        with self._lock:
            while self._fd is not None and self.failure is None:
                if self._committed_end == self._end:
                    self._written.wait()
                    continue
                due_in = self._committed_at + self.commit_interval_s - time.monotonic()
                if due_in > 0:
                    self._written.wait(due_in)
                    continue
                try:
                    self._commit()
                except (ResultsUnwritable, OSError) as error:  # kept in `failure` (a disk error) or logged
                    if self.failure is None:
                        self.failure = results.unwritable(self.path, str(error))
                    return

    def commit(self) -> None:
        """fsync now what was written (a run's stop does this through `close`)."""
        with self._lock:
            self._commit()

    def close(self) -> None:
        """Commit, then close. A commit that fails is kept in `failure`, which the runner raises."""
        with self._lock:
            if self._fd is not None:
                try:
                    self._commit()
                except ResultsUnwritable:
                    pass  # in self.failure
                finally:
                    os.close(self._fd)
                    self._fd = None
                    self._written.notify_all()
        if self._committer is not threading.current_thread():
            self._committer.join()

    def __enter__(self) -> "RecordJournal":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _cut_torn_tail(fd: int) -> int:
    """Cut off what follows the last newline (a line a crash or a full disk cut short); returns the new end."""
    end = position = os.fstat(fd).st_size
    keep = 0
    while position > 0:
        start = max(0, position - 4096)
        newline = os.pread(fd, position - start, start).rfind(b"\n")
        if newline >= 0:
            keep = start + newline + 1
            break
        position = start
    if keep != end:
        os.ftruncate(fd, keep)
    return keep


def _truncate(fd: int, end: int) -> None:
    try:
        os.ftruncate(fd, end)
    except OSError:
        pass  # the disk refuses even that: reading skips a torn last line, and opening cuts it off


# What a journal line must hold beyond its fields' types: a bad line is refused when read, not
# counted into "-1 of 360 samples not answered" or failing deep in reconciliation.
_INT8 = (-128, 127)
_BOUNDS = {"index": (0, None), "label": (-1, None), "tau_q15": (0, Q15_ONE), "predicted": (0, None),
           "confidence_q15": (0, Q15_ONE), "cycles": (0, None), "attempts": (1, None), "count": (1, None),
           "rise": (0, None), "ticks": (0, None), "exit_logits": _INT8, "head_logits": _INT8}
METHODS = tuple(MeasurementMethod)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


_FIELD_TYPES = {  # a field's type: how to check a JSON value against it, and its name in a message
    str: (lambda v: isinstance(v, str), "text"),
    MeasurementMethod: (lambda v: isinstance(v, str), "text"),
    int: (_is_int, "a whole number"),
    bool: (lambda v: isinstance(v, bool), "true or false"),
    float: (_is_number, "a number"),
    float | None: (lambda v: v is None or _is_number(v), "a number or null"),
    int | None: (lambda v: v is None or _is_int(v), "a whole number or null"),
    bool | None: (lambda v: v is None or isinstance(v, bool), "true, false or null"),
    str | None: (lambda v: v is None or isinstance(v, str), "text or null"),
    list[int]: (lambda v: isinstance(v, list) and all(map(_is_int, v)), "a list of whole numbers"),
    list[list[int]]: (lambda v: isinstance(v, list) and all(isinstance(r, list) and all(map(_is_int, r)) for r in v),
                      "a list of lists of whole numbers"),
}


def _whole_numbers(value) -> list[int]:
    if isinstance(value, list):
        return [n for item in value for n in _whole_numbers(item)]
    return [value] if _is_int(value) else []


def _row_problem(kind: type, row) -> str | None:
    """What is wrong with a parsed journal line, or None."""
    if not isinstance(row, dict):
        return "not a JSON object"
    hints = _HINTS[kind]
    missing = [name for name in hints if name not in row and name not in _OPTIONAL[kind]]
    if missing:
        return f"missing {', '.join(missing)}"
    unknown = [key for key in row if key not in hints]
    if unknown:
        return f"unknown field {str(unknown[0])[:40]!r}"
    for name, hint in hints.items():
        if name not in row:
            continue
        conforms, wanted = _FIELD_TYPES[hint]
        if not conforms(row[name]):
            return f"{name} must be {wanted}, not {json.dumps(row[name])[:40]}"
        low, high = _BOUNDS.get(name, (None, None))
        for number in _whole_numbers(row[name]):
            if low is not None and number < low or high is not None and number > high:
                return f"{name}: {number} is out of range [{low}, {'…' if high is None else high}]"
    if kind is Measurement and row["method"] not in METHODS:
        return f"method must be one of {', '.join(METHODS)}, not {json.dumps(row['method'])[:40]}"
    return None


def _row(kind: type, parsed: dict) -> Record | Measurement:
    if kind is Measurement:
        return Measurement(**{**parsed, "method": MeasurementMethod(parsed["method"])})
    return kind(**parsed)


# Per (board slot, test set): the board's model and the test set's size, from the lab.
Expected = dict[tuple[str, str], tuple[str, int]]


def _unexpected(row: Record | Measurement, expected: Expected) -> str | None:
    """Why a well-formed line does not belong to this lab's run, or None."""
    if (row.slot, row.testset) not in expected:
        if all(slot != row.slot for slot, _ in expected):
            return f"board {row.slot[:40]!r} is not in the lab"
        return f"board {row.slot} has no test set {row.testset[:40]!r}"
    model, samples = expected[(row.slot, row.testset)]
    if row.index >= samples:
        return f"index {row.index} is past the end of {row.testset} ({samples} samples)"
    if isinstance(row, Record) and row.model != model:
        return f"model {row.model[:40]!r}, but board {row.slot} runs {model}"
    return None


def _read(directory: Path, name: str, expected: Expected | None) -> list:
    """The rows of a journal, each checked; a torn last line (no newline) is skipped."""
    path = Path(directory) / name
    kind = KINDS[name]
    with results.on_disk(path):
        if not path.exists():
            return []
        data = path.read_bytes()
    lines = data.split(b"\n")
    lines.pop()  # what follows the last newline: nothing, or a line a crash cut short
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            parsed = json.loads(line)
        except (ValueError, RecursionError):  # not JSON, or not UTF-8
            problem = "not a line of JSON"
        else:
            problem = _row_problem(kind, parsed)
        row = _row(kind, parsed) if problem is None else None
        if row is not None and expected is not None:
            problem = _unexpected(row, expected)
        if problem is not None:
            raise JournalError(f"{path}:{number}: {problem}; a crash only ever cuts the last line: remove this "
                               "one (its sample is measured again) or start a new run")
        rows.append(row)
    return rows


def read_records(directory: Path, expected: Expected | None = None) -> list[Record]:
    """Every complete record of a run, each checked (and, given `expected`, against the lab); a record
    that appears twice (a resumed run repeating its last sample) counts once."""
    records: dict[tuple, Record] = {}
    for record in _read(directory, JOURNAL, expected):
        records.setdefault(record.key, record)
    return list(records.values())


def read_measurements(directory: Path, expected: Expected | None = None) -> list[Measurement]:
    return _read(directory, MEASUREMENTS, expected)


def write_parquet(rows: list, directory: Path, name: str = PARQUET, kind: type = Record) -> Path:
    path = Path(directory) / name
    temporary = path.with_suffix(".tmp")
    columns = {field: [getattr(r, field) for r in rows] for field in kind.__dataclass_fields__}
    with results.on_disk(path):
        try:
            pq.write_table(pa.table(columns), temporary)
            temporary.replace(path)
        except OSError:
            temporary.unlink(missing_ok=True)
            raise
    return path
