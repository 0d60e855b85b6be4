"""The `hil model` and `hil testsets` commands, run as a user runs them: as subprocesses."""

import json
import re
import shutil
import subprocess
import sys

import pytest

from hil import REPO_ROOT
from hil.model.card import MODELS_DIR
from hil.model.testsets import TESTSETS_DIR

BAD_INPUT = 3


def hil(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "hil.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env={"NO_COLOR": "1", "PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "3"},
                          timeout=300)


def assert_one_line_error(result, *fragments):
    assert result.returncode == BAD_INPUT, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_model_info_shows_the_card():
    result = hil("model", "info", "qute-digits")
    assert result.returncode == 0, result.stderr
    sha = json.loads((MODELS_DIR / "qute-digits" / "model.json").read_text())["files"]["stage1.tflite"]
    assert sha[:16] in result.stdout
    assert "STM32L432KC" in result.stdout


@pytest.mark.parametrize("model", ["qute-digits", "qute-mnist1d"])
def test_docs_models_md_holds_what_eval_prints(model):
    result = hil("model", "eval", model, "--markdown")
    assert result.returncode == 0, result.stderr
    docs = (REPO_ROOT / "docs" / "models.md").read_text()
    block = re.search(rf"<!-- hil model eval {model} --markdown -->\n(.*?)<!-- end -->", docs, re.S)
    assert block, f"docs/models.md lacks the generated block for {model}"
    assert block.group(1).strip() == result.stdout.strip()


def test_eval_prints_every_configuration():
    result = hil("model", "eval", "qute-mnist1d")
    assert result.returncode == 0, result.stderr
    for text in ("QUTE ensemble", "single head", "cascade", "0.95", "shift-s3", "OOD AUROC"):
        assert text in result.stdout


def test_missing_model(tmp_path):
    assert_one_line_error(hil("model", "info", tmp_path / "nothing"), "nothing/model.json", "no such model")


def test_corrupt_model_json(tmp_path):
    copy = tmp_path / "qute-digits"
    shutil.copytree(MODELS_DIR / "qute-digits", copy)
    (copy / "model.json").write_text('{"name": "qute-digits", ')
    assert_one_line_error(hil("model", "eval", copy), "model.json", "not valid JSON")


def test_model_json_without_a_field(tmp_path):
    copy = tmp_path / "qute-digits"
    shutil.copytree(MODELS_DIR / "qute-digits", copy)
    data = json.loads((copy / "model.json").read_text())
    del data["softmax_lut"]
    (copy / "model.json").write_text(json.dumps(data))
    assert_one_line_error(hil("model", "info", copy), "model.json", "softmax_lut")


def test_corrupt_stage_file(tmp_path):
    copy = tmp_path / "qute-digits"
    shutil.copytree(MODELS_DIR / "qute-digits", copy)
    (copy / "stage1.tflite").write_bytes(b"not a flatbuffer")
    assert_one_line_error(hil("model", "eval", copy), "stage1.tflite", "does not match model.json")


def test_missing_test_set(tmp_path):
    shutil.copytree(TESTSETS_DIR / "qute-digits", tmp_path / "sets")
    (tmp_path / "sets" / "shift-s2.npz").unlink()
    assert_one_line_error(hil("model", "eval", "qute-digits", "--testsets", tmp_path / "sets"),
                          "shift-s2.npz", "no such test set")


def test_corrupt_test_set(tmp_path):
    shutil.copytree(TESTSETS_DIR / "qute-digits", tmp_path / "sets")
    (tmp_path / "sets" / "ood.npz").write_bytes(b"PK\x03\x04 garbage")
    assert_one_line_error(hil("model", "eval", "qute-digits", "--testsets", tmp_path / "sets"),
                          "ood.npz", "not a readable test set")


def test_test_set_of_the_other_model(tmp_path):
    shutil.copytree(TESTSETS_DIR / "qute-digits", tmp_path / "sets")
    shutil.copy(TESTSETS_DIR / "qute-mnist1d" / "clean.npz", tmp_path / "sets" / "clean.npz")
    assert_one_line_error(hil("model", "eval", "qute-digits", "--testsets", tmp_path / "sets"),
                          "clean.npz", "does not fit model qute-digits")


def test_cli_runs_from_another_directory(tmp_path):
    assert hil("model", "info", "qute-mnist1d", cwd=tmp_path).returncode == 0
