"""`hil history` and `hil prune` on real runs of FakeBoards: every metric of metrics.json trended, latency and
energy per exit path included, read from each run's own file; a PNG plot; the results folder the lab's own, as
`hil run` writes it; and a retention command that never deletes a baseline or a run that can still be resumed."""

import json
import time
from pathlib import Path

import matplotlib.image
import pytest
import yaml

from hil.cli import main
from hil.report import trends
from hil.run.runner import execute
from hil.store import results
from hil.testing.fake_board import Timing
from tests.support.labs import BAD_INPUT, BOARDS, PASS, USAGE, write_lab

SAMPLES = 3  # per test set; three sets per board (clean, shift-s2, ood)
RESULTS = "out"  # the lab's results folder, relative to the lab file


class Quiet:
    def start(self, totals):
        pass

    def advance(self, slot, samples):
        pass


class CtrlC(Quiet):
    def start(self, totals):
        raise KeyboardInterrupt  # as a Ctrl-C once the rack is up: the run is interrupted, resumable


def lab_with_relative_results(tmp_path: Path) -> Path:
    """A lab whose `results:` is relative: it means beside the lab file, wherever hil is started."""
    lab = write_lab(tmp_path, samples=SAMPLES)
    data = yaml.safe_load(lab.read_text())
    data["results"] = RESULTS
    lab.write_text(yaml.safe_dump(data, sort_keys=False))
    return lab


def slower_each_run(fake_rack, lab: Path, runs: int) -> list[Path]:
    """`runs` runs, each board's stages slower than in the run before: every run has latencies and energies
    of its own, so a trend that read one run's file for another's would show."""
    run_dirs = []
    for number in range(runs):
        for slot in BOARDS:
            fake_rack.timing[slot] = Timing(300_000 + 150_000 * number, 1_500_000 + 400_000 * number)
        run_dirs.append(execute(lab, None, Quiet(), None).run_dir)
    return run_dirs


@pytest.fixture
def elsewhere(tmp_path, monkeypatch) -> Path:
    """hil started in another folder than the lab's, with a results/ of its own that is not the lab's."""
    folder = tmp_path / "elsewhere"
    (folder / "results").mkdir(parents=True)
    monkeypatch.chdir(folder)
    return folder


def table_rows(out: str) -> list[list[str]]:
    return [[cell.strip() for cell in line.split("│")[1:-1]] for line in out.splitlines() if line.count("│") > 2]


def performance_of(run_dir: Path, name: str) -> dict[tuple[str, str, str], float]:
    data = json.loads((run_dir / "metrics.json").read_text())
    return {(p["slot"], p["testset"], "exit" if p["exited"] else "full"): p[name] for p in data["performance"]}


@pytest.mark.parametrize("name", ["latency_ms_p50", "energy_uj"])
def test_latency_and_energy_are_trended_per_exit_path_with_a_plot(fake_rack, tmp_path, elsewhere, capsys, name):
    """The issue: `hil history --metric latency_ms_p50` said "no metric", and there was no plot."""
    lab = lab_with_relative_results(tmp_path)
    run_dirs = slower_each_run(fake_rack, lab, 3)
    png = tmp_path / f"{name}.png"
    assert main(["history", str(lab), "--metric", name, "--plot", str(png)]) == PASS
    out = capsys.readouterr().out
    shown = {(row[0], row[3], row[4], row[5]): row[6] for row in table_rows(out)}
    expected = {(d.name, *key): f"{value:.4g}" for d in run_dirs for key, value in performance_of(d, name).items()}
    assert shown == expected and len(expected) >= 3 * len(BOARDS) * 3
    assert {path for *_, path in performance_of(run_dirs[0], name)} == {"exit", "full"}
    for key in performance_of(run_dirs[0], name):  # slower each run: three values of its own per line
        per_run = [performance_of(d, name)[key] for d in run_dirs]
        assert per_run == sorted(per_run) and len(set(per_run)) == 3, (key, per_run)
    assert f"wrote {png}" in out

    image = matplotlib.image.imread(png)  # a PNG that decodes, of a plot's size
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    assert image.shape[0] > 300 and image.shape[1] > 500


def test_trends_hold_every_runs_own_figures_in_run_order(fake_rack, tmp_path):
    lab = lab_with_relative_results(tmp_path)
    run_dirs = slower_each_run(fake_rack, lab, 3)
    history = trends.load_history(tmp_path / RESULTS, None, None, None, None)
    assert [run.id for run in history.runs] == [d.name for d in run_dirs]
    for name in ("latency_ms_p95", "energy_uj"):
        values = history.values(name)
        for (slot, testset, path), _ in performance_of(run_dirs[0], name).items():
            assert values[trends.Series(slot, testset, trends.ExitPath(path))] == [
                performance_of(d, name)[slot, testset, path] for d in run_dirs]
    accuracy = history.values("accuracy")
    ood = [series for series in accuracy if series.testset == "ood"]
    assert ood and all(accuracy[series] == [None] * 3 for series in ood)  # an OOD set has no accuracy
    assert set(trends.load_history(tmp_path / RESULTS, None, "an386-digits", "clean", 2).values("ece")) == {
        trends.Series("an386-digits", "clean")}


def test_every_figure_of_metrics_json_is_a_metric(fake_rack, tmp_path):
    """The catalog of metrics is metrics.json's: a figure added to the file and not to `hil history` shows here."""
    lab = write_lab(tmp_path, samples=SAMPLES)
    data = json.loads((execute(lab, None, Quiet(), None).run_dir / "metrics.json").read_text())

    def numeric(row: dict) -> set[str]:
        return {key for key, value in row.items() if isinstance(value, (int, float)) and not isinstance(value, bool)}

    summary, performance = data["summaries"][0], data["performance"][0]
    # The uncertainty report's own accuracy and n are the summary's accuracy and samples; a path's unmeasured
    # count is its board and test set's (the summary's unmeasured).
    expected = {("summaries", name) for name in numeric(summary)}
    expected |= {("summaries.uncertainty", name) for name in numeric(summary["uncertainty"]) - {"accuracy", "n"}}
    expected |= {("performance", name) for name in numeric(performance) - {"unmeasured"}}
    assert {(metric.source.value, metric.name) for metric in trends.METRICS.values()} == expected


def test_history_of_a_lab_reads_the_results_beside_the_lab_and_marks_the_baseline(fake_rack, tmp_path,
                                                                                     elsewhere, capsys):
    """The issue: `--results` was taken from the current folder, while `hil run` writes beside the lab file."""
    lab = lab_with_relative_results(tmp_path)
    first, second = slower_each_run(fake_rack, lab, 2)
    assert first.parent == tmp_path / RESULTS
    assert main(["baseline", "set", str(first)]) == PASS
    capsys.readouterr()
    assert main(["history", str(lab)]) == PASS
    out = capsys.readouterr().out
    assert f"Runs in {tmp_path / RESULTS}" in out
    rows = table_rows(out)
    runs = {row[0]: row[-1] for row in rows if len(row) == 9}
    assert runs == {first.name: "baseline", second.name: ""}
    headline = [row for row in rows if len(row) > 9]
    assert {(row[0], row[-1]) for row in headline} == {(first.name, "baseline"), (second.name, "")}
    assert len(headline) == 2 * len(BOARDS) * 3  # every run × board × test set
    clean = next(row for row in headline if row[:3] == [second.name, "an386-digits", "clean"])
    assert clean[6] == f"{performance_of(second, 'latency_ms_p50')['an386-digits', 'clean', 'exit']:.4g}"
    assert "latency_ms_p50 (exit)" in out and "energy_uj (full)" in out

    assert main(["history", "--results", str(elsewhere / "results")]) == BAD_INPUT  # the cwd's: not the lab's
    assert "no runs in its catalog" in capsys.readouterr().err
    assert main(["history", "--results", str(tmp_path / RESULTS), "--last", "1"]) == PASS
    runs = {row[0] for row in table_rows(capsys.readouterr().out) if len(row) == 9}
    assert runs == {second.name}


@pytest.mark.parametrize("args, says", [
    (["--metric", "speed"], "latency_ms_p50, latency_ms_p95"),  # an unknown metric lists the known ones
    (["--plot", "trend.svg"], "name a .png file"),
    (["--last", "0"], "from 1"),
    (["--results", "RESULTS"], "not both"),
])
def test_a_wrong_history_command_line_is_a_usage_error(fake_rack, tmp_path, elsewhere, capsys, args, says):
    lab = lab_with_relative_results(tmp_path)
    execute(lab, None, Quiet(), None)
    argv = ["history", str(lab), *[str(tmp_path / RESULTS) if a == "RESULTS" else a for a in args]]
    try:
        code = main(argv)
    except SystemExit as refused:  # argparse's own refusals end there, with hil's usage code
        code = refused.code
    error = capsys.readouterr().err
    assert code == USAGE and says in error, error


def test_a_board_or_test_set_no_run_has_is_bad_input_naming_those_there_are(fake_rack, tmp_path, capsys):
    lab = lab_with_relative_results(tmp_path)
    execute(lab, None, Quiet(), None)
    assert main(["history", str(lab), "--metric", "ece", "--board", "nope"]) == BAD_INPUT
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "--board 'nope'" in error and "an386-digits, an500-mnist1d" in error


def catalog_ids(results_dir: Path) -> list[str]:
    return [run["id"] for run in results.list_runs(results_dir)]


def test_prune_keeps_the_newest_and_the_baseline_and_says_what_it_removes(fake_rack, tmp_path, elsewhere, capsys):
    lab = lab_with_relative_results(tmp_path)
    run_dirs = [execute(lab, None, Quiet(), None).run_dir for _ in range(5)]
    folder = tmp_path / RESULTS
    assert main(["baseline", "set", str(run_dirs[0])]) == PASS
    capsys.readouterr()

    assert main(["prune", str(lab), "--keep", "2", "--dry-run"]) == PASS
    dry = capsys.readouterr().out
    assert all(d.exists() for d in run_dirs) and catalog_ids(folder) == [d.name for d in run_dirs]
    assert [line.split()[2] for line in dry.splitlines() if line.startswith("would remove /")] == [
        str(d) for d in run_dirs[1:3]]
    assert dry.splitlines()[-1].startswith("would remove 2 run folders")

    assert main(["prune", str(lab), "--keep", "2"]) == PASS
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in out if line.startswith("removed /")] == [str(d) for d in run_dirs[1:3]]
    assert any(line.startswith(f"kept {run_dirs[0]}") and "a baseline" in line for line in out)
    assert out[-1].startswith("removed 2 run folders")
    kept = [run_dirs[0], *run_dirs[3:]]
    assert [d for d in run_dirs if d.exists()] == kept and catalog_ids(folder) == [d.name for d in kept]

    assert main(["history", str(lab)]) == PASS  # what is left still reads
    assert main(["prune", str(lab), "--older-than", "30d"]) == PASS  # every run is recent: nothing goes
    assert [d for d in run_dirs if d.exists()] == kept and "removed 0 run folders" in capsys.readouterr().out


def test_prune_leaves_a_resumable_run_unless_asked(fake_rack, tmp_path, capsys):
    lab = lab_with_relative_results(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        execute(lab, None, CtrlC(), None)
    (interrupted,) = [p for p in (tmp_path / RESULTS).iterdir() if p.is_dir()]
    finished = execute(lab, None, Quiet(), None).run_dir
    assert [run["status"] for run in results.list_runs(tmp_path / RESULTS)] == ["interrupted", "pass"]

    assert main(["prune", str(lab), "--keep", "1"]) == PASS
    assert interrupted.exists() and "--include-unfinished" in capsys.readouterr().out
    assert main(["prune", str(lab), "--keep", "1", "--include-unfinished"]) == PASS
    assert not interrupted.exists() and finished.exists()
    assert catalog_ids(tmp_path / RESULTS) == [finished.name]


def test_prune_without_a_rule_is_a_usage_error(fake_rack, tmp_path, capsys):
    lab = lab_with_relative_results(tmp_path)
    run_dir = execute(lab, None, Quiet(), None).run_dir
    assert main(["prune", str(lab)]) == USAGE
    assert "--keep N" in capsys.readouterr().err and run_dir.exists()


def test_older_than_removes_the_runs_that_started_before_it_and_keep_holds_the_newest(fake_rack, tmp_path, capsys):
    from hil.store import retention

    lab = lab_with_relative_results(tmp_path)
    run_dirs = [execute(lab, None, Quiet(), None).run_dir for _ in range(3)]
    assert main(["baseline", "set", str(run_dirs[1])]) == PASS
    folder, name = tmp_path / RESULTS, yaml.safe_load(lab.read_text())["lab"]
    month_later = time.time() + 31 * 86400

    def going(rules: retention.Retention) -> list[str]:
        return [run.id for run in retention.candidates(folder, name, rules, now=month_later) if run.kept is None]

    assert going(retention.Retention(None, 30 * 86400)) == [run_dirs[0].name, run_dirs[2].name]
    assert going(retention.Retention(1, 30 * 86400)) == [run_dirs[0].name]  # --keep 1 holds the newest
    assert going(retention.Retention(None, 32 * 86400)) == []  # all started less than 32 days before
