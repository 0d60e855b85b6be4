"""The command line's exit codes: a wrong command line is its own code (never 2, which says the rack
failed), no option is taken by an abbreviation, `hil --help` lists every code as the README does, and
`hil --version` says which hil this is. `hil` runs as a user runs it, a subprocess."""

import argparse
import re

import pytest

from hil import REPO_ROOT, __version__
from hil.cli import build_parser
from tests.support.labs import INFRASTRUCTURE, USAGE, hil, write_lab


@pytest.mark.parametrize("args", [
    ["frobnicate"],  # no such command
    ["run", "LAB", "--bogus"],  # no such option
    ["sweep", "LAB"],  # --threshold is required
    ["run", "LAB", "--baselin", "latest-pass"],  # an abbreviation of --baseline
    ["run", "LAB", "--wait", "soon"],  # a value argparse's type refuses
    ["baseline"],  # a command without its action
    ["run"],  # neither a lab nor a run to resume
    ["history", "LAB", "--metric", "speed"],  # no such metric in metrics.json
    ["history", "LAB", "--results", "results"],  # a lab and a results folder
    ["prune", "LAB"],  # neither --keep nor --older-than
    ["prune", "LAB", "--older-than", "soon"],  # not an age
])
def test_a_wrong_command_line_is_a_usage_error_and_runs_nothing(args, tmp_path):
    lab = write_lab(tmp_path, samples=2)
    result = hil(*[str(lab) if a == "LAB" else a for a in args], cwd=tmp_path)
    assert result.returncode == USAGE != INFRASTRUCTURE, (args, result.stderr)
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, result.stderr
    assert not (tmp_path / "results").exists(), "a boards' run started"


def every_parser(parser: argparse.ArgumentParser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from every_parser(sub)


def test_no_parser_takes_abbreviations():
    parsers = list(every_parser(build_parser()))
    assert len(parsers) > 20  # hil, its commands and their actions
    assert [p.prog for p in parsers if p.allow_abbrev] == []


def test_help_lists_every_exit_code_as_the_readme_does():
    result = hil("--help")
    assert result.returncode == 0 and "exit codes:" in result.stdout, result.stdout
    listed = re.findall(r"^\s+(\d+)  \S.+$", result.stdout.split("exit codes:", 1)[1], re.MULTILINE)
    readme = (REPO_ROOT / "README.md").read_text().split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    documented = re.findall(r"^\| (\d+) \|", readme, re.MULTILINE)
    assert listed == documented and str(USAGE) in listed and len(set(listed)) == len(listed)


def test_version():
    result = hil("--version")
    assert (result.returncode, result.stdout.strip()) == (0, f"hil {__version__}")


def subcommands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield " ".join((*path, name)), sub
                yield from subcommands(sub, (*path, name))


def test_every_subcommand_says_what_it_does_and_shows_examples_that_parse():
    from hil.cli import EXAMPLES

    parser = build_parser()
    commands = dict(subcommands(parser))
    assert set(EXAMPLES) == set(commands)  # a new command gets its examples, a gone one loses them
    for command, sub in commands.items():
        text = sub.format_help()
        assert sub.description and sub.description in " ".join(text.split()), command
        assert "examples:" in text, command
        for example in EXAMPLES[command]:
            words = example.split()
            assert words[:1 + len(command.split())] == ["hil", *command.split()], example
            # parses as written (quotes as a shell would take them), or argparse exits with the usage code
            parser.parse_args([w.strip("'") for w in re.findall(r"'[^']*'|\S+", example)][1:])
