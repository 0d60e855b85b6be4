"""`hil -vv` and `hil --log-file`: a log on stderr that leaves stdout to the console and --json,
and a wire log that holds every frame of a run, by link, as it went by (docs/logging.md)."""

import json
import shutil
from collections import defaultdict
from pathlib import Path

import pytest

from hil.hw import monitor_protocol as mp
from hil.hw import protocol
from hil.run.records import read_records

from tests.support.labs import hil, write_lab

pytestmark = pytest.mark.skipif(shutil.which("qemu-system-arm") is None, reason="qemu-system-arm not installed")
SLOT = "an386-digits"


def frames(entries: list[dict], link: str) -> list[tuple[str, protocol.Frame]]:
    """The frames one link sent ("out") and received ("in"), in order."""
    return [(e["dir"], protocol.Frame(e["type"], e["seq"], bytes.fromhex(e["payload"])))
            for e in entries if e.get("link") == link and "type" in e]


def test_a_run_with_a_log_file_keeps_every_frame_of_every_link(tmp_path):
    lab = write_lab(tmp_path, boards={SLOT: ("mps2-an386", "qute-digits")}, samples=4)
    log = tmp_path / "wire.jsonl"
    result = hil("-vv", "run", lab, "--json", "--log-file", log, env={"HIL_LOCK_DIR": str(tmp_path / "locks")})
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(result.stdout)  # stdout holds the summary alone
    assert " INFO hil.hw.monitor: " in result.stderr and '"link"' not in result.stderr  # the wire stays in the file

    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert all(e["time"].endswith("+00:00") for e in entries)
    exchange = frames(entries, SLOT)
    (first_dir, first), (second_dir, second) = exchange[:2]
    assert (first_dir, first.type, second_dir, second.type) == ("out", protocol.MessageType.HELLO,
                                                                 "in", protocol.MessageType.INFO)
    assert second.seq == first.seq
    info = protocol.parse_message(second)
    assert info.board == "mps2-an386" and info.firmware_sha256.hex() == summary["boards"][SLOT]["reported"]["firmware_sha256"]

    # Every INFER is answered by a RESULT with its seq. The first is the health check's known answer
    # (hil/run/health.py: clean#0, not journaled); the rest are the journal's records.
    sent = {f.seq: protocol.parse_message(f) for d, f in exchange if d == "out" and f.type == protocol.MessageType.INFER}
    got = {f.seq: protocol.parse_message(f) for d, f in exchange if d == "in" and f.type == protocol.MessageType.RESULT}
    records = [r for r in read_records(Path(summary["run_dir"])) if r.slot == SLOT]
    assert len(records) == 12 and sent.keys() == got.keys() and len(got) == len(records) + 1
    health = got.pop(next(f.seq for d, f in exchange if d == "out" and f.type == protocol.MessageType.INFER))
    clean0 = next(r for r in records if (r.testset, r.index) == ("clean", 0))
    assert (health.predicted, health.logits[0]) == (clean0.predicted, tuple(clean0.exit_logits))
    by_result = defaultdict(int)
    for result_message in got.values():
        by_result[(result_message.predicted, result_message.cycles, result_message.logits[0])] += 1
    for record in records:
        by_result[(record.predicted, record.cycles, tuple(record.exit_logits))] -= 1
    assert not any(by_result.values())

    # The measurement unit's link is logged too, under its own name and message types.
    unit = frames(entries, f"{SLOT} monitor")
    assert unit[0][0] == "out" and unit[0][1].type == mp.MonitorMessage.HELLO
    assert any(d == "in" and f.type == mp.MonitorMessage.EDGES for d, f in unit)  # v1.1's batches
    names = {e["name"] for e in entries if e.get("link") == f"{SLOT} monitor" and "type" in e}
    assert {"HELLO", "INFO", "CONFIGURE", "CONFIGURED", "FLUSH", "FLUSHED", "EDGES", "SAMPLES"} <= names


def test_without_a_log_file_or_verbosity_stderr_is_as_before(tmp_path):
    result = hil("history", "--results", tmp_path / "none")
    assert result.returncode == 3 and result.stderr.startswith("hil: error: ")
    assert len(result.stderr.strip().splitlines()) == 1


def test_an_unwritable_log_file_is_a_one_line_bad_input(tmp_path):
    result = hil("--log-file", tmp_path / "no" / "such" / "folder.jsonl", "history", "--results", tmp_path)
    assert result.returncode == 3
    (line,) = result.stderr.strip().splitlines()
    assert "--log-file" in line and "folder.jsonl" in line
