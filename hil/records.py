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


class RecordJournal:
    """Append-only, thread-safe; every record is on disk before `append` returns."""

    def __init__(self, directory: Path):
        self.path = Path(directory) / JOURNAL
        self._lock = threading.Lock()
        self._file = open(self.path, "a", encoding="utf-8")

    def append(self, record: Record) -> None:
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


def write_parquet(records: list[Record], directory: Path) -> Path:
    path = Path(directory) / PARQUET
    columns = {name: [getattr(r, name) for r in records] for name in Record.__dataclass_fields__}
    pq.write_table(pa.table(columns), path)
    return path
