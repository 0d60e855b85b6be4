"""The journal and the run files on a results disk that fails: real tmpfs mounts (size-limited),
no board. A disk error is one line naming the file; a journal's torn last line (a crash) is cut
off, never glued onto. The same through `hil run` on emulated boards is
tests/emulated/test_results_disk.py."""

import pytest

from hil.errors import ResultsUnwritable
from hil.store import results
from hil.run.records import Record, RecordJournal, read_records, write_parquet
from tests.support.disks import journal_lines, tmpfs


def record(index: int) -> Record:
    return Record(slot="a", model="m", testset="clean", index=index, label=1, tau_q15=29491, exited=True,
                  predicted=1, confidence_q15=30000, cycles=1000, exit_logits=[1, 2, 3], head_logits=[], attempts=1)


def test_a_journal_opened_again_cuts_off_a_torn_last_line(tmp_path):
    with RecordJournal(tmp_path) as journal:
        journal.append(record(0))
        journal.append(record(1))
    whole = (tmp_path / "records.jsonl").read_bytes()
    (tmp_path / "records.jsonl").write_bytes(whole + whole.splitlines()[0][:30])  # a crash mid-write
    assert [r.index for r in read_records(tmp_path)] == [0, 1]  # the torn line is no bad input
    with RecordJournal(tmp_path) as journal:
        journal.append(record(2))
    assert [line["index"] for line in journal_lines(tmp_path)] == [0, 1, 2]
    assert [r.index for r in read_records(tmp_path)] == [0, 1, 2]


def test_a_full_disk_stops_the_journal_with_one_error_and_only_whole_lines(tmp_path):
    with tmpfs(tmp_path / "disk", size="4k") as disk, RecordJournal(disk) as journal:
        written = 0
        with pytest.raises(ResultsUnwritable, match=r"records.jsonl: cannot write the results \(No space left"):
            for index in range(100):
                journal.append(record(index))
                written += 1
        assert 0 < written < 100
        with pytest.raises(ResultsUnwritable):  # kept: every later record is refused too
            journal.append(record(written))
        assert [line["index"] for line in journal_lines(disk)] == list(range(written))


def test_run_files_and_the_catalog_on_a_full_disk_are_results_errors_and_leave_no_half_files(tmp_path):
    run = {"id": "r", "lab": {"name": "lab"}, "started": "now", "verdict": {"status": "pass", "exit_code": 0},
           "git": {"revision": "x"}, "boards": {}, "samples": 0}
    with tmpfs(tmp_path / "disk", size="64k") as disk:
        run_dir = disk / "r"
        run_dir.mkdir()
        (disk / "filler").write_bytes(b"\0" * 60 * 1024)
        try:
            (disk / "filler2").write_bytes(b"\0" * 8 * 1024)
        except OSError:
            pass  # the disk is full now, to the last page
        with pytest.raises(ResultsUnwritable, match=r"run.json: cannot write the results \(No space left"):
            results.write_json(run_dir / "run.json", {"text": "x" * 20_000})
        with pytest.raises(ResultsUnwritable, match=r"records.parquet: cannot write the results"):
            write_parquet([record(i) for i in range(2000)], run_dir)
        with pytest.raises(ResultsUnwritable, match=r"catalog.sqlite: cannot write the results"):
            results.catalog_record(run_dir, run)
        assert sorted(p.name for p in run_dir.iterdir()) == [], "a half-written file was left"


def test_a_journal_commits_in_groups_and_on_close(tmp_path, monkeypatch):
    """Many quick appends take a handful of fsyncs (one per COMMIT_INTERVAL_S at most, plus close), and
    each line is in the file the moment `append` returns; a lone line is committed in time by itself."""
    import os
    import time

    from hil.run import records

    fsynced = []
    real_fsync = os.fsync
    monkeypatch.setattr(records.os, "fsync", lambda fd: (fsynced.append(time.monotonic()), real_fsync(fd)))
    started = time.monotonic()
    with RecordJournal(tmp_path) as journal:
        for index in range(3000):
            journal.append(record(index))
            if index == 2999:  # written through to the file before any commit of it
                assert len(journal_lines(tmp_path)) == 3000
        elapsed = time.monotonic() - started
    assert 1 <= len(fsynced) <= elapsed / records.COMMIT_INTERVAL_S + 2, (len(fsynced), elapsed)
    assert [r.index for r in read_records(tmp_path)] == list(range(3000))
    gaps = [b - a for a, b in zip(fsynced, fsynced[1:-1])]  # close's own commit may follow at once
    assert all(gap >= records.COMMIT_INTERVAL_S * 0.9 for gap in gaps), gaps

    fsynced.clear()
    with RecordJournal(tmp_path) as journal:
        journal.append(record(3000))
        time.sleep(3 * records.COMMIT_INTERVAL_S)
        assert len(fsynced) == 1  # committed by the committer thread, not waiting for close
    assert len(fsynced) == 1  # nothing left for close to commit
