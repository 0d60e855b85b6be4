"""The nightly workflow's own `run:` steps, read from .github/workflows/nightly.yml and run in order as a runner
would, against the emulated lab: with the repository variable HIL_LAB unset (the default lab of the checkout) and
set (a lab file of the test's own), over nights in fresh checkouts that share only the kept results folder.

The one step not run is `bash setup.sh`: it would reinstall hil into the venv these tests run from, and a fresh clone
runs it anyway (.ci/run). Each night's checkout has that venv as its .venv instead. The default lab here is a
one-board cut of the committed labs.yaml (12 samples per test set) at the same place, `labs.yaml` with `results:
results`: the full default lab takes about 40 s a night, and what is checked is which lab ran and where it went.
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.support.labs import write_lab
from tests.support.workflow import Contexts, StepResult, load_job, run_step, substitute

ONE_BOARD = {"an386-digits": ("mps2-an386", "qute-digits")}
SETUP = "bash setup.sh"
PUBLISHERS = ("actions/upload-artifact", "mikepenz/action-junit-report")


@dataclass
class Night:
    run: StepResult  # the step with id `run`
    uploaded: list[str]  # upload-artifact's paths, substituted
    junit: str  # the JUnit report's paths, substituted
    checkout: Path


def the_nights_lab(tmp_path: Path) -> Path:
    """A one-board lab as the checkout's labs.yaml would be: results in `results/` beside it."""
    lab = write_lab(tmp_path / "template", boards=ONE_BOARD)
    document = yaml.safe_load(lab.read_text())
    document["results"] = "results"
    lab.write_text(yaml.safe_dump(document, sort_keys=False))
    return lab


def night(runner: Path, default_lab: Path, variables: dict[str, str]) -> Night:
    """One night: a fresh checkout (actions/checkout cleans), then every `run:` step in order."""
    checkout = runner / "repo" / "repo"  # _work/<repo>/<repo>, as a runner lays it out
    shutil.rmtree(checkout, ignore_errors=True)
    checkout.mkdir(parents=True)
    shutil.copy(default_lab, checkout / "labs.yaml")
    (checkout / ".venv").symlink_to(Path(sys.prefix))
    job = load_job()
    contexts = Contexts(vars=variables)
    env = {name: substitute(str(value), contexts) for name, value in job["env"].items()}
    env["HIL_LOCK_DIR"] = str(runner / "locks")  # this runner's own, away from other tests' boards
    skipped, results, uses = [], {}, {}
    for step in job["steps"]:
        if "run" not in step:
            action = step["uses"].split("@")[0]
            if action in PUBLISHERS:  # what they would publish, now that the steps before them have run
                uses[action] = {key: substitute(str(value), contexts) for key, value in step["with"].items()}
            continue
        assert "${{" not in step["run"], f"{step.get('name')}: pass expressions through env, not into the script"
        if step["run"].strip() == SETUP:
            skipped.append(step["run"])
            continue
        result = run_step(step, env, checkout, runner / "temp")
        results[step.get("id", result.name)] = result
        if "id" in step:
            contexts.steps[step["id"]] = {"outputs": result.outputs}
        if result.returncode and step.get("id") != "run":
            raise AssertionError(f"{result.name}: exit {result.returncode}\n{result.stderr}")
    assert skipped == [SETUP]
    assert set(uses) == set(PUBLISHERS)
    upload = uses["actions/upload-artifact"]
    return Night(results["run"], [p.strip() for p in upload["path"].splitlines() if p.strip()],
                 uses["mikepenz/action-junit-report"]["report_paths"], checkout)


def ran(run_dir: str) -> dict:
    return json.loads((Path(run_dir) / "run.json").read_text())


def test_unset_hil_lab_runs_the_checkouts_lab_and_keeps_its_results_across_clean_nights(tmp_path):
    runner, lab = tmp_path / "runner", the_nights_lab(tmp_path)
    kept = runner / "repo" / "hil-results"  # HIL_RESULTS' default, ../hil-results: beside the checkout

    first = night(runner, lab, {})
    assert first.run.returncode == 0, first.run.stderr
    first_dir = Path(first.run.outputs["run_dir"])
    assert first_dir.parent == kept.resolve()
    assert Path(ran(first_dir)["lab"]["file"]).resolve() == (first.checkout / "labs.yaml").resolve()
    assert "baseline: none" in first.run.stdout

    second = night(runner, lab, {})
    assert second.run.returncode == 0, second.run.stderr
    second_dir = Path(second.run.outputs["run_dir"])
    assert second_dir != first_dir and sorted(p for p in kept.iterdir() if p.is_dir()) == sorted([first_dir,
                                                                                                 second_dir])
    # The catalog outlived the checkout: the second night was judged against the first.
    assert "baseline: --baseline latest-pass" in second.run.stdout
    summary = json.loads((second.checkout / "summary.json").read_text())
    assert (second.checkout / summary["run_dir"]).resolve() == second_dir
    assert (second.checkout / summary["baseline"]["path"]).resolve() == first_dir
    # Only this night's run is published.
    assert second.uploaded == ["summary.json", "hil-stderr.log", str(second_dir)]
    assert second.junit == f"{second_dir}/junit.xml" and Path(second.junit).is_file()


def test_set_hil_lab_runs_that_lab_and_publishes_its_run(tmp_path):
    runner = tmp_path / "runner"
    own_lab = write_lab(tmp_path / "rack", boards=ONE_BOARD)  # results: an absolute folder of its own
    own_results = Path(yaml.safe_load(own_lab.read_text())["results"])

    tonight = night(runner, the_nights_lab(tmp_path), {"HIL_LAB": str(own_lab)})
    assert tonight.run.returncode == 0, tonight.run.stderr
    run_dir = Path(tonight.run.outputs["run_dir"])
    assert run_dir.parent == own_results.resolve()
    assert Path(ran(run_dir)["lab"]["file"]).resolve() == own_lab.resolve()
    assert not [p for p in (runner / "repo" / "hil-results").iterdir()], "the default lab ran too"
    assert tonight.uploaded[-1] == str(run_dir) and Path(tonight.junit).is_file()
