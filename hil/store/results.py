"""Run directories, provenance and the catalog of runs.

results/<run-id>/
    run.json          provenance and verdict (written at the start, rewritten at the end, however
                      the run ends); per session what each board's link met (retries, bad frames)
    records.jsonl     per-sample records, journaled as they arrive
    records.parquet   the same, for analysis, written at the end
    metrics.json      per board and test set; regression rules against a baseline
    measurements.jsonl/.parquet  latency and energy per inference
    traces/           what each board's measurement unit sent
    junit.xml         one test case per board × test set × check, for CI
    report.html       everything above for a person, self-contained, with plots
    traceback.txt     only when hil itself failed after the run started (run.json says so)
results/catalog.sqlite  one row per run

run.json, metrics.json and sweep.json are written and read as the dataclasses of hil/store/files.py.

A results disk that is full, read-only, not writable for us or failing ends the command with one line
and exit code 4 (ResultsUnwritable); what was journaled before stays on disk.
"""

from __future__ import annotations

import errno
import json
import os
import platform
import secrets
import sqlite3
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from hil import __version__
from hil.assets import CHECKOUT
from hil.errors import ResultsUnwritable

RUN_JSON = "run.json"
METRICS_JSON = "metrics.json"
CATALOG = "catalog.sqlite"

# The disk, not hil: full, over quota, read-only, no permission, failing, file too large.
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO, errno.EFBIG})
_SQLITE_DISK = ("SQLITE_FULL", "SQLITE_READONLY", "SQLITE_IOERR", "SQLITE_CANTOPEN", "SQLITE_PERM")


def disk_problem(error: BaseException) -> str | None:
    """What is wrong with the disk, when `error` says so; None for any other error."""
    if isinstance(error, OSError) and error.errno in DISK_ERRNOS:
        return error.strerror or os.strerror(error.errno)
    if isinstance(error, sqlite3.Error) and str(getattr(error, "sqlite_errorname", "")).startswith(_SQLITE_DISK):
        return str(error)
    return None


def unwritable(path: Path, problem: str) -> ResultsUnwritable:
    return ResultsUnwritable(f"{path}: cannot write the results ({problem}); free space on that disk or make it "
                             "writable")


@contextmanager
def on_disk(path: Path):
    """Reading or writing results at `path`: a disk error becomes ResultsUnwritable (exit 4), others pass."""
    try:
        yield
    except (OSError, sqlite3.Error) as error:
        problem = disk_problem(error)
        if problem is None:
            raise
        raise unwritable(path, problem) from None


def check_writable(folder: Path) -> None:
    """Before anything is locked or started: `folder`, or the folder it will be made in, can be
    written, so a read-only or foreign disk is found now, not at the first record. Nothing is made."""
    existing = Path(folder).absolute()
    while not existing.exists():
        existing = existing.parent
    if not os.access(existing, os.W_OK):
        read_only = os.statvfs(existing).f_flag & os.ST_RDONLY
        raise unwritable(Path(folder), "Read-only file system" if read_only else "Permission denied")


def utc_now() -> str:
    """A timestamp for run.json and the catalog: UTC, to the second."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def new_run_dir(results_dir: Path) -> Path:
    run_id = time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(2)
    path = Path(results_dir) / run_id
    with on_disk(path):
        path.mkdir(parents=True)
    return path


def git_revision() -> dict:
    """The checkout's revision; "unknown" for an installed hil, which is asked nothing: git would
    report whatever repository the environment happens to sit in (its version is in software)."""
    def git(*args) -> str:
        result = subprocess.run(["git", "-C", str(CHECKOUT), *args], capture_output=True, text=True)
        return result.stdout.strip() if result.returncode == 0 else ""

    revision = git("rev-parse", "HEAD") if CHECKOUT is not None else ""
    return {"revision": revision or "unknown", "dirty": bool(git("status", "--porcelain")) if revision else None}


def software_versions() -> dict:
    from importlib.metadata import version

    versions = {"hil": __version__, "python": platform.python_version()}
    for package in ("numpy", "ai-edge-litert", "pyserial", "pyocd"):
        try:
            versions[package] = version(package)
        except Exception:  # noqa: BLE001 - an optional package that is not installed
            versions[package] = None
    return versions


def write_text(path: Path, text: str) -> None:
    """Write via a temporary file, so a crash never leaves half a file where CI picks it up."""
    temporary = path.with_suffix(".tmp")
    with on_disk(path):
        try:
            temporary.write_text(text, encoding="utf-8")
            temporary.replace(path)
        except OSError:
            temporary.unlink(missing_ok=True)  # half a file helps nobody, and its space may be what is short
            raise


def write_json(path: Path, data: dict) -> None:
    write_text(path, json.dumps(data, indent=1, default=str) + "\n")


@dataclass(frozen=True)
class CatalogRow:
    """One run in results/catalog.sqlite (RunFile.catalog_row() makes it from run.json)."""

    id: str
    lab: str
    started: str
    finished: str | None
    status: str  # the verdict's
    exit_code: int | None
    git_revision: str
    boards: int
    samples: int
    path: str  # absolute


def catalog_record(run_dir: Path, row: CatalogRow) -> None:
    """Insert or update this run's row in results/catalog.sqlite."""
    path = Path(run_dir).parent / CATALOG
    with on_disk(path), sqlite3.connect(path) as db:
        db.execute("""CREATE TABLE IF NOT EXISTS runs (
            id TEXT PRIMARY KEY, lab TEXT, started TEXT, finished TEXT, status TEXT, exit_code INTEGER,
            git_revision TEXT, boards INTEGER, samples INTEGER, path TEXT)""")
        db.execute("INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   (row.id, row.lab, row.started, row.finished, str(row.status), row.exit_code, row.git_revision,
                    row.boards, row.samples, row.path))


# The baselines table's columns after (lab, id, path, set_at), added to catalogs made before them.
_BASELINE_COLUMNS = {"set_by": "TEXT", "forced": "TEXT"}


def _catalog(results_dir: Path) -> sqlite3.Connection:
    db = sqlite3.connect(Path(results_dir) / CATALOG)
    db.row_factory = sqlite3.Row
    db.execute("CREATE TABLE IF NOT EXISTS baselines (lab TEXT PRIMARY KEY, id TEXT, path TEXT, set_at TEXT)")
    have = {row["name"] for row in db.execute("PRAGMA table_info(baselines)")}
    for column, kind in _BASELINE_COLUMNS.items():
        if column not in have:
            db.execute(f"ALTER TABLE baselines ADD COLUMN {column} {kind}")
    return db


@dataclass(frozen=True)
class BaselineEntry:
    """A lab's baseline, as `hil baseline set` recorded it in the catalog."""

    lab: str
    id: str
    path: Path
    set_at: str
    set_by: str | None  # user@host; None for a baseline set before hil recorded it
    forced: str | None  # why the run was unfit, when `--force` set it anyway; None: it was fit


def set_baseline(run_dir: Path, lab: str, run_id: str, set_by: str, forced: str | None = None) -> None:
    """The run that `--baseline baseline` means for its lab, from now on; `forced`: why it is unfit."""
    with on_disk(Path(run_dir).parent / CATALOG), _catalog(Path(run_dir).parent) as db:
        db.execute("INSERT OR REPLACE INTO baselines (lab, id, path, set_at, set_by, forced) "
                   "VALUES (?, ?, ?, ?, ?, ?)",
                   (lab, run_id, str(Path(run_dir).resolve()), utc_now(), set_by, forced))


def baselines(results_dir: Path) -> dict[str, BaselineEntry]:
    """Every lab's baseline in this results folder, by lab name. Only read: an older catalog, without the
    later columns, is not altered (it may be on a read-only archive)."""
    path = Path(results_dir) / CATALOG
    if not path.exists():
        return {}
    with sqlite3.connect(path) as db:
        db.row_factory = sqlite3.Row
        if db.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'baselines'").fetchone() is None:
            return {}
        rows = db.execute("SELECT * FROM baselines").fetchall()
    return {row["lab"]: BaselineEntry(row["lab"], row["id"], Path(row["path"]), row["set_at"],
                                      *(row[c] if c in row.keys() else None for c in _BASELINE_COLUMNS))
            for row in rows}


def get_baseline(results_dir: Path, lab: str) -> Path | None:
    entry = baselines(results_dir).get(lab)
    return None if entry is None else entry.path


def latest_pass(results_dir: Path, lab: str, exclude: Path | None = None) -> Path | None:
    """The newest run of `lab` that passed, other than `exclude` (the run being judged)."""
    for run in reversed(list_runs(results_dir, lab)):
        path = Path(run["path"])
        if run["status"] == "pass" and (exclude is None or path != Path(exclude).resolve()):
            return path
    return None


def list_runs(results_dir: Path, lab: str | None = None) -> list[dict]:
    """The catalog's runs (of `lab`, or of every lab), oldest first: by start (to the second), then by when
    their row was last written."""
    path = Path(results_dir) / CATALOG
    if not path.exists():
        return []
    with sqlite3.connect(path) as db:
        db.row_factory = sqlite3.Row
        return [dict(row) for row in db.execute(
            "SELECT * FROM runs WHERE ?1 IS NULL OR lab = ?1 ORDER BY started, rowid", (lab,))]
