"""The nightly workflow: valid YAML, a cron schedule, the rack's runner, artefacts kept, and
every hil command it calls exists with the options it uses."""

import re
import shlex
import subprocess
import sys

import yaml

from hil import REPO_ROOT

WORKFLOW = REPO_ROOT / ".github" / "workflows" / "nightly.yml"


def test_the_nightly_workflow_is_valid_and_runs_on_the_rack():
    workflow = yaml.safe_load(WORKFLOW.read_text())
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as true
    assert re.fullmatch(r"[\d*/,-]+ [\d*/,-]+ [\d*/,-]+ [\d*/,-]+ [\d*/,-]+", triggers["schedule"][0]["cron"])
    (job,) = workflow["jobs"].values()
    assert job["runs-on"] == ["self-hosted", "hil"]
    uses = [step.get("uses", "") for step in job["steps"]]
    assert any(u.startswith("actions/upload-artifact@") for u in uses)
    upload = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/upload-artifact@"))
    assert upload["if"] == "always()" and "results/" in upload["with"]["path"]


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
