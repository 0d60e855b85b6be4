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
"""

from __future__ import annotations

import json
import platform
import secrets
import sqlite3
import subprocess
import time
from pathlib import Path

from hil import REPO_ROOT, __version__
from hil.errors import BadInput

RUN_JSON = "run.json"
METRICS_JSON = "metrics.json"
CATALOG = "catalog.sqlite"


def utc_now() -> str:
    """A timestamp for run.json and the catalog: UTC, to the second."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def new_run_dir(results_dir: Path) -> Path:
    run_id = time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(2)
    path = Path(results_dir) / run_id
    path.mkdir(parents=True)
    return path


def git_revision() -> dict:
    def git(*args) -> str:
        result = subprocess.run(["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True)
        return result.stdout.strip() if result.returncode == 0 else ""

    revision = git("rev-parse", "HEAD")
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
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(path)


def write_json(path: Path, data: dict) -> None:
    write_text(path, json.dumps(data, indent=1, default=str) + "\n")


def read_run(run_dir: Path) -> dict:
    return json.loads((Path(run_dir) / RUN_JSON).read_text())


def require_run(run_dir: Path) -> dict:
    """run.json of a run directory given by the user; bad input when it is none."""
    if not (Path(run_dir) / RUN_JSON).is_file():
        raise BadInput(f"{run_dir}: not a run directory (no {RUN_JSON}); give results/<run-id>")
    return read_run(run_dir)


def catalog_record(run_dir: Path, run: dict) -> None:
    """Insert or update this run's row in results/catalog.sqlite."""
    with sqlite3.connect(Path(run_dir).parent / CATALOG) as db:
        db.execute("""CREATE TABLE IF NOT EXISTS runs (
            id TEXT PRIMARY KEY, lab TEXT, started TEXT, finished TEXT, status TEXT, exit_code INTEGER,
            git_revision TEXT, boards INTEGER, samples INTEGER, path TEXT)""")
        db.execute(
            "INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (run["id"], run["lab"]["name"], run["started"], run.get("finished"), run["verdict"]["status"],
             run["verdict"]["exit_code"], run["git"]["revision"], len(run["boards"]), run.get("samples", 0),
             str(Path(run_dir).resolve())),
        )


def _catalog(results_dir: Path) -> sqlite3.Connection:
    db = sqlite3.connect(Path(results_dir) / CATALOG)
    db.row_factory = sqlite3.Row
    db.execute("CREATE TABLE IF NOT EXISTS baselines (lab TEXT PRIMARY KEY, id TEXT, path TEXT, set_at TEXT)")
    return db


def set_baseline(run_dir: Path, run: dict) -> None:
    """The run that `--baseline baseline` means for its lab, from now on."""
    with _catalog(Path(run_dir).parent) as db:
        db.execute("INSERT OR REPLACE INTO baselines VALUES (?, ?, ?, ?)",
                   (run["lab"]["name"], run["id"], str(Path(run_dir).resolve()),
                    utc_now()))


def get_baseline(results_dir: Path, lab: str) -> Path | None:
    if not (Path(results_dir) / CATALOG).exists():
        return None
    with _catalog(results_dir) as db:
        row = db.execute("SELECT path FROM baselines WHERE lab = ?", (lab,)).fetchone()
    return Path(row["path"]) if row else None


def latest_pass(results_dir: Path, lab: str, exclude: Path | None = None) -> Path | None:
    """The newest run of `lab` that passed, other than `exclude` (the run being judged)."""
    for run in reversed(list_runs(results_dir)):
        path = Path(run["path"])
        if run["lab"] == lab and run["status"] == "pass" and (exclude is None or path != Path(exclude).resolve()):
            return path
    return None


def list_runs(results_dir: Path) -> list[dict]:
    path = Path(results_dir) / CATALOG
    if not path.exists():
        return []
    with sqlite3.connect(path) as db:
        db.row_factory = sqlite3.Row
        return [dict(row) for row in db.execute("SELECT * FROM runs ORDER BY started")]
