"""`hil sweep` on the fake rack: a quarantined board is left out of the sweep (not brought up, named in its
verdict), and a board that hangs mid-sweep is taken up the recovery ladder, which sweep.json keeps."""

from decimal import Decimal

from hil.lab.load import load_lab
from hil.run.sweep import run_sweep
from hil.store import files, health
from hil.testing.fake_board import Faults
from tests.support.labs import BOARDS, PASS, write_lab

SAMPLES = 4
HUNG, SICK = "an386-digits", "an500-mnist1d"


class Quiet:
    def start(self, totals):
        pass

    def advance(self, slot, samples):
        pass


def test_a_sweep_leaves_quarantined_boards_out_and_keeps_what_the_ladder_did(fake_rack, tmp_path):
    lab = load_lab(write_lab(tmp_path, samples=SAMPLES, request_timeout_s=0.2, retries=1))
    health.quarantine(lab.results_dir, lab.name, SICK, "USB cable loose")
    fake_rack.faults[HUNG] = Faults(hang_after=5)  # resync cannot wake it; the reset does
    outcome = run_sweep(lab, [Decimal("0.5"), Decimal("1")], Quiet(), None)
    assert outcome.verdict.exit_code == PASS, outcome.verdict.reasons
    assert SICK not in {b.slot for b in fake_rack.boards} and SICK not in {p.slot for p in outcome.points}
    assert {p.slot for p in outcome.points} == set(BOARDS) - {SICK}
    (note,) = outcome.verdict.reasons
    assert note.startswith(f"{SICK}: quarantined, not brought up") and "USB cable loose" in note
    on_disk = files.read_sweep(outcome.sweep_dir)
    assert [q.slot for q in on_disk.quarantined] == [SICK]
    assert on_disk.recoveries and on_disk.recoveries == outcome.recoveries
    assert {(r.slot, r.recovered_by) for r in on_disk.recoveries} == {(HUNG, "reset")}
