"""Per-sample device records, written the moment they arrive.

Each record is one line of JSON appended to `records.jsonl` in the run directory and
flushed to disk before the next sample is sent, so a crash, a dead board or Ctrl-C loses
nothing already measured, and `hil run --resume` knows exactly what is left to do. When
a run ends the journal is also written as `records.parquet` for analysis.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

JOURNAL = "records.jsonl"
PARQUET = "records.parquet"
MEASUREMENTS = "measurements.jsonl"
MEASUREMENTS_PARQUET = "measurements.parquet"


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


@dataclass(frozen=True)
class Measurement:
    """Latency and energy of one inference window, from the board's measurement unit.

    `method` "window": one inference, its own busy window; "burst": `count` back-to-back
    runs of sample `index` in one window (INFER_BURST), figures divided by `count`;
    "unmeasured": an answer that has no window of its own, `reason` says why, and the
    unit's figures (rise … clock_ok, energy_j, idle_w) are None."""

    slot: str
    testset: str
    index: int
    exited: bool
    method: str  # window | burst | unmeasured
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


class RecordJournal:
    """Append-only, thread-safe; every record is on disk before `append` returns."""

    def __init__(self, directory: Path, name: str = JOURNAL):
        self.path = Path(directory) / name
        self._lock = threading.Lock()
        self._file = open(self.path, "a", encoding="utf-8")

    def append(self, record: Record | Measurement) -> None:
        line = json.dumps(asdict(record), separators=(",", ":")) + "\n"
        with self._lock:
            self._file.write(line)
            self._file.flush()
            os.fsync(self._file.fileno())

    def close(self) -> None:
        with self._lock:
            self._file.close()

    def __enter__(self) -> "RecordJournal":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_records(directory: Path) -> list[Record]:
    """Every complete record of a run; a line cut short by a crash is ignored, and a record
    that appears twice (a resumed run repeating its last sample) counts once."""
    path = Path(directory) / JOURNAL
    if not path.exists():
        return []
    records: dict[tuple, Record] = {}
    with open(path, encoding="utf-8") as journal:
        for line in journal:
            try:
                record = Record(**json.loads(line))
            except (json.JSONDecodeError, TypeError):
                continue  # the last line of a run that was killed mid-write
            records.setdefault(record.key, record)
    return list(records.values())


def read_measurements(directory: Path) -> list[Measurement]:
    path = Path(directory) / MEASUREMENTS
    if not path.exists():
        return []
    measurements = []
    with open(path, encoding="utf-8") as journal:
        for line in journal:
            try:
                measurements.append(Measurement(**json.loads(line)))
            except (json.JSONDecodeError, TypeError):
                continue  # a line cut short by a crash
    return measurements


def write_parquet(rows: list, directory: Path, name: str = PARQUET, kind: type = Record) -> Path:
    path = Path(directory) / name
    columns = {field: [getattr(r, field) for r in rows] for field in kind.__dataclass_fields__}
    pq.write_table(pa.table(columns), path)
    return path
