"""The nightly workflow read and its `run:` steps run as a GitHub Actions runner would (tests only).

Only what the runner itself does before a step's shell starts is done here: the `${{ }}` expressions of the job's
`env:` and of the steps' `with:` are substituted from the contexts, the step's shell is the one Actions uses for
its `shell:` (docs: "Workflow syntax", jobs.<job_id>.steps[*].shell), and `$GITHUB_OUTPUT` is a file read back
into `steps.<id>.outputs`. An expression of a form this reader does not know is refused, so a workflow that grows
one fails its test instead of being half emulated.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from hil import REPO_ROOT

WORKFLOW = REPO_ROOT / ".github" / "workflows" / "nightly.yml"
EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
LITERAL = re.compile(r"'((?:[^']|'')*)'")
CONTEXT_PATH = re.compile(r"[A-Za-z_][\w-]*(?:\.[A-Za-z_][\w-]*)+")
# The command lines Actions runs a step's script file with, on Linux.
SHELLS = {None: ["bash", "-e"], "bash": ["bash", "--noprofile", "--norc", "-eo", "pipefail"]}


class UnknownExpression(ValueError):
    pass


@dataclass
class Contexts:
    """What `${{ }}` may read: repository variables, the steps' outputs, the run's github context."""

    vars: dict[str, str] = field(default_factory=dict)
    steps: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)
    github: dict[str, str] = field(default_factory=lambda: {"run_id": "1"})

    def lookup(self, path: str) -> str:
        context, *keys = path.split(".")
        value = {"vars": self.vars, "steps": self.steps, "github": self.github}.get(context)
        if value is None:
            raise UnknownExpression(f"context {context!r} of {path!r}")
        for key in keys:
            value = value.get(key, "") if isinstance(value, dict) else ""
        return value if isinstance(value, str) else ""


def evaluate(expression: str, contexts: Contexts) -> str:
    """`a || b || 'literal'`: the first operand that is not empty, as Actions' `||` does for strings."""
    for operand in (part.strip() for part in expression.split("||")):
        if match := LITERAL.fullmatch(operand):
            value = match.group(1).replace("''", "'")
        elif CONTEXT_PATH.fullmatch(operand):
            value = contexts.lookup(operand)
        else:
            raise UnknownExpression(operand)
        if value:
            return value
    return ""


def substitute(text: str, contexts: Contexts) -> str:
    return EXPRESSION.sub(lambda match: evaluate(match.group(1), contexts), text)


def load_job(workflow: Path = WORKFLOW) -> dict:
    (job,) = yaml.safe_load(workflow.read_text())["jobs"].values()
    return job


@dataclass
class StepResult:
    name: str
    returncode: int
    stdout: str
    stderr: str
    outputs: dict[str, str]


def run_step(step: dict, env: dict[str, str], workspace: Path, runner_temp: Path) -> StepResult:
    """One `run:` step in `workspace`, as the runner writes and runs its script file."""
    runner_temp.mkdir(parents=True, exist_ok=True)
    script = runner_temp / "step.sh"
    script.write_text(step["run"])
    output_file = runner_temp / "github_output"
    output_file.write_text("")
    result = subprocess.run([*SHELLS[step.get("shell")], str(script)], cwd=workspace, capture_output=True,
                            text=True, timeout=600,
                            env={**os.environ, **env, "GITHUB_OUTPUT": str(output_file),
                                 "GITHUB_WORKSPACE": str(workspace), "RUNNER_TEMP": str(runner_temp)})
    outputs = dict(line.split("=", 1) for line in output_file.read_text().splitlines() if "=" in line)
    return StepResult(step.get("name", step["run"]), result.returncode, result.stdout, result.stderr, outputs)
