"""Regression detection against a baseline run, end to end on emulated boards: one real
change per case (firmware built from altered sources, a relabelled test set), and an
unchanged rerun that must not raise a false alarm."""

import json
import os
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import yaml

from hil.firmware import build as firmware
from hil.model.reference import Reference
from hil.model.testsets import write_npz

from tests.support.labs import BOARDS, USAGE, hil, write_lab

pytestmark = pytest.mark.skipif(shutil.which("qemu-system-arm") is None, reason="qemu-system-arm not installed")
needs_toolchain = pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None and not os.environ.get("CI"),
                                     reason="needs the ARM toolchain (CI installs it)")
PASS, REGRESSION, BAD_INPUT = 0, 1, 3
SAMPLES = 40


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    """A passing run, set as its lab's baseline."""
    tmp_path = tmp_path_factory.mktemp("baseline")
    lab = write_lab(tmp_path, samples=SAMPLES)
    result = hil("run", lab, "--json")
    assert result.returncode == PASS, result.stderr[-3000:]
    run_dir = Path(json.loads(result.stdout)["run_dir"])
    assert hil("baseline", "set", run_dir).returncode == PASS
    return lab, run_dir


def rerun(lab: Path, baseline_dir: Path, edit=None) -> tuple[int, dict, Path]:
    """Run the baseline's lab again, into the same results folder, after `edit`ing a copy."""
    data = yaml.safe_load(lab.read_text())
    if edit:
        edit(data)
    current = lab.with_name("current.yaml")
    current.write_text(yaml.safe_dump(data, sort_keys=False))
    result = hil("run", current, "--baseline", baseline_dir, "--json")
    summary = json.loads(result.stdout)
    return result.returncode, summary, Path(summary["run_dir"])


def failed(summary: dict) -> set[tuple[str, str, str]]:
    return {(r["slot"], r["testset"], r["rule"]) for r in summary["rules"] if r["status"] == "fail"}


def junit_failures(run_dir: Path) -> set[tuple[str, str]]:
    suite = ET.parse(run_dir / "junit.xml").getroot().find("testsuite")
    return {(case.get("classname"), case.get("name")) for case in suite.iter("testcase")
            if case.find("failure") is not None}


def test_an_unchanged_rerun_passes_every_rule(baseline):
    lab, baseline_dir = baseline
    code, summary, run_dir = rerun(lab, baseline_dir)
    assert code == PASS, summary["verdict"]
    rules = summary["rules"]
    assert {r["rule"] for r in rules} >= {"numerics", "accuracy", "latency", "energy", "ece", "nll", "brier"}
    assert not failed(summary) and not junit_failures(run_dir)
    latency = [r for r in rules if r["rule"] == "latency"]
    assert latency and all(r["figures"]["delta"] == 0 for r in latency)  # emulated time is exact
    run = json.loads((run_dir / "run.json").read_text())
    assert run["baseline"]["id"] == baseline_dir.name


def test_the_baseline_set_by_name_and_latest_pass_resolve(baseline):
    lab, baseline_dir = baseline
    for reference in ("baseline", "latest-pass"):
        result = hil("run", lab, "--baseline", reference, "--json")
        assert result.returncode == PASS, result.stderr[-2000:]
        assert json.loads(result.stdout)["baseline"]["id"] == baseline_dir.name or reference == "latest-pass"
    missing = hil("run", lab, "--baseline", "no-such-run")
    assert missing.returncode == BAD_INPUT and "not a run" in missing.stderr


def test_relabelled_samples_fail_on_mcnemar(baseline, tmp_path):
    lab, baseline_dir = baseline

    def flip(data):
        model = "qute-digits"
        paths = data["models"][model]["testsets"]
        clean = next(p for p in paths if p.endswith("clean.npz"))
        with np.load(clean) as arrays:
            content = {key: arrays[key] for key in arrays.files}
        content["labels"] = content["labels"].copy()
        content["labels"][:12] = (content["labels"][:12] + 1) % 10  # 12 of 40 now "wrong"
        relabelled = tmp_path / "relabelled" / "clean.npz"
        write_npz(relabelled, content)
        data["models"][model]["testsets"] = [str(relabelled) if p == clean else p for p in paths]

    code, summary, run_dir = rerun(lab, baseline_dir, flip)
    assert code == REGRESSION
    assert failed(summary) == {("an386-digits", "clean", "accuracy")}, summary["rules"]
    assert ("an386-digits.clean", "accuracy") in junit_failures(run_dir)
    assert any("McNemar" in reason for reason in summary["verdict"]["reasons"])


def build_variant(tmp_path: Path, edit) -> firmware.FirmwareManifest:
    source = tmp_path / "firmware"
    shutil.copytree(firmware.FIRMWARE_DIR, source, ignore=shutil.ignore_patterns("prebuilt", "build"))
    kernels = source / "src" / "kernels.c"
    kernels.write_text(edit(kernels.read_text()))
    (built,) = firmware.build(out=tmp_path / "built", source_dir=source, images=[BOARDS["an500-mnist1d"]],
                              roundings=(Reference.LITERT,))
    return built


def with_image(manifest: firmware.FirmwareManifest):
    def edit(data):
        data["firmware"]["mps2-an500"]["qute-mnist1d"] = str(manifest.directory / "manifest.json")
    return edit


@needs_toolchain
def test_a_slowed_kernel_fails_on_latency_and_energy_only(baseline, tmp_path):
    lab, baseline_dir = baseline
    anchor = ("void k_conv2d(const conv_params_t *p, const int8_t *input, const int8_t *filter,\n"
              "              const int32_t *bias, const qmul_t *per_channel, int8_t *output)\n{\n")
    spin = "    for (volatile int32_t spin = 0; spin < 4000; spin++) {\n    }\n"

    def slow_down(text: str) -> str:
        assert text.count(anchor) == 1
        return text.replace(anchor, anchor + spin)

    slowed = build_variant(tmp_path, slow_down)
    code, summary, run_dir = rerun(lab, baseline_dir, with_image(slowed))
    assert code == REGRESSION, summary["verdict"]
    rules = failed(summary)
    assert rules and {rule for _slot, _set, rule in rules} <= {"latency", "energy"}, rules
    assert {slot for slot, _set, _rule in rules} == {"an500-mnist1d"}
    assert ("an500-mnist1d.clean", "latency") in junit_failures(run_dir)


@needs_toolchain
def test_changed_rounding_fails_on_numerics(baseline, tmp_path):
    lab, baseline_dir = baseline
    # The rounding the images run: the DSP kernels' rescale (every board kind is a Cortex-M4 or M7).
    broken = build_variant(tmp_path, lambda text: text.replace("((high & r->mask) > threshold ? 1 : 0)",
                                                               "((high & r->mask) >= threshold ? 1 : 0)"))
    code, summary, run_dir = rerun(lab, baseline_dir, with_image(broken))
    assert code == REGRESSION
    numerics = [r for r in summary["rules"] if r["rule"] == "numerics" and r["status"] == "fail"]
    assert numerics and {r["slot"] for r in numerics} == {"an500-mnist1d"}
    assert ("an500-mnist1d.clean", "reconciliation") in junit_failures(run_dir) or any(
        name == "reconciliation" and cls.startswith("an500-mnist1d") for cls, name in junit_failures(run_dir))


def test_history_lists_the_runs_and_a_metrics_trend(baseline):
    lab, baseline_dir = baseline
    results_dir = baseline_dir.parent
    listing = hil("history", "--results", results_dir)
    assert listing.returncode == PASS and baseline_dir.name in listing.stdout
    trend = hil("history", "--results", results_dir, "--metric", "accuracy", "--board", "an386-digits",
                "--testset", "clean")
    assert trend.returncode == PASS, trend.stderr
    accuracy = json.loads((baseline_dir / "metrics.json").read_text())["summaries"][0]["accuracy"]
    assert f"{accuracy:.4g}" in trend.stdout
    unknown = hil("history", "--results", results_dir, "--metric", "speed", "--board", "an386-digits",
                  "--testset", "clean")
    assert unknown.returncode == USAGE and "known:" in unknown.stderr
