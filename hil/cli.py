"""The `hil` command line. Exit codes (hil/errors.py, README): 0 pass, 1 regression or mismatch,
2 infrastructure failure, 3 bad input, 4 results disk unwritable, 64 usage error, 130 interrupted."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from hil import __version__
from hil.errors import EXIT_CODES, EXIT_INTERRUPTED, EXIT_USAGE, BadInput, HilError, Interrupted, UsageError
from hil.model.registry import MODEL_NAMES

if TYPE_CHECKING:  # every import that takes time is inside the command that needs it: `hil --help` stays quick
    from rich.console import Console


def _console(stderr: bool = False, piped_width: int = 200) -> Console:
    # rich honours NO_COLOR itself; a fixed width keeps piped output readable (rich would
    # otherwise squeeze the tables of CI logs and files into 80 columns).
    from rich.console import Console

    console = Console(stderr=stderr)
    if not console.is_terminal:
        console.width = piped_width
    return console


def cmd_model_info(args) -> int:
    from hil.model.card import load_model
    from hil.report.model import card_tables
    from hil.report.table import to_rich

    console = _console()
    for table in card_tables(load_model(args.model)):
        console.print(to_rich(table))
    return 0


def cmd_model_eval(args) -> int:
    from hil.model.evaluation import evaluate_model
    from hil.model.card import load_model
    from hil.model.reference import Reference
    from hil.report.model import evaluation_tables
    from hil.report.table import to_markdown, to_rich
    from hil.model.testsets import load_model_testsets

    card = load_model(args.model)
    tables = evaluation_tables(evaluate_model(card, load_model_testsets(card, args.testsets),
                                              Reference(args.reference)))
    if args.markdown:
        print("\n".join(to_markdown(t) for t in tables), end="")
        return 0
    console = _console()
    for table in tables:
        console.print(to_rich(table))
    return 0


def cmd_model_train(args) -> int:
    from hil import assets
    from hil.training import train_and_export

    if not args.out:
        assets.checkout("hil model train", "to write fixtures/models/ into", "give --out DIR")
    directory = Path(args.out) if args.out else assets.MODELS_DIR / args.model
    path = train_and_export(args.model, directory)
    print(f"wrote {path}")
    return 0


def cmd_testsets_generate(args) -> int:
    from hil.model.card import load_model
    from hil import assets
    from hil.model.testsets import DEFAULT_SEED, generate

    if not args.out:
        assets.checkout("hil testsets generate", "to write fixtures/testsets/ into", "give --out DIR")
    out = Path(args.out) if args.out else assets.TESTSETS_DIR
    for name in args.models or MODEL_NAMES:
        card = load_model(name)
        for path in generate(card, out / card.name, seed=DEFAULT_SEED if args.seed is None else args.seed):
            print(f"wrote {path}")
    return 0


def cmd_firmware_generate(args) -> int:
    from hil import assets
    from hil.firmware import build as firmware

    assets.checkout("hil firmware generate", "to write firmware/generated/ into", "run it in a checkout")
    for path in firmware.generate(args.models or firmware.MODELS):
        print(f"wrote {path}")
    return 0


def cmd_firmware_build(args) -> int:
    from hil import assets
    from hil.firmware import build as firmware

    assets.checkout("hil firmware build", "with the firmware sources (firmware/)", "run it in a checkout")
    for manifest in firmware.build(Path(args.out) if args.out else None):
        print(f"{manifest.board}/{manifest.model} ({manifest.rounding} rounding): flash {manifest.flash_bytes} B, "
              f"RAM {manifest.ram_bytes} B, image sha256 {manifest.image_sha256[:16]}")
    return 0


def cmd_firmware_conformance(args) -> int:
    from hil import assets
    from hil.firmware import conformance, conformance_gen

    assets.checkout("hil firmware conformance", "to write the suite into", "run it in a checkout")
    vectors = conformance_gen.generate()
    digest = conformance.write_suite(vectors)
    print(f"wrote {conformance.SUITE_FILE}: {len(vectors)} vectors, sha256 {digest}")
    return 0


def _image_labs(args, command: str, roundings: list | None = None, reference=None) -> list:
    """The labs `hil firmware verify` and `profile` drive: a lab's boards (--lab; `reference` in place of its
    run.reference, if given), or every prebuilt image of the --board kinds and --model models on an emulated board
    of its kind, one lab per kernel rounding mode in `roundings` (default litert)."""
    from dataclasses import replace

    from hil.firmware import build as firmware
    from hil.lab.load import load_lab
    from hil.model.reference import DEFAULT_REFERENCE
    from hil.run.verify import lab_images, no_twin_reason, prebuilt_lab

    if args.lab:
        if roundings:
            raise BadInput(f"{args.lab}: --rounding picks prebuilt images, and a lab names its own; leave it out "
                           "(its images' rounding is its run.reference)")
        lab = lab_images(load_lab(Path(args.lab)), args.board, args.model)
        if not lab.boards:
            raise BadInput(f"{args.lab}: no board of this lab is of the --board kinds and --model models given; "
                           "name kinds and models its boards have")
        return [replace(lab, run=replace(lab.run, reference=reference)) if reference else lab]
    kinds = args.board or firmware.BOARDS
    for reason in filter(None, map(no_twin_reason, kinds)):
        print(f"hil: {reason}", file=sys.stderr)
    kinds = [kind for kind in kinds if no_twin_reason(kind) is None]
    if not kinds:
        raise BadInput(f"no --board kind given has an emulated twin; {command} physical boards with --lab")
    return [prebuilt_lab(kinds, args.model or firmware.MODELS, rounding, reference)
            for rounding in dict.fromkeys(roundings or [DEFAULT_REFERENCE])]


def cmd_firmware_verify(args) -> int:
    from hil.model.reference import Reference
    from hil.report.firmware import size_table, verification_tables
    from hil.report.table import to_markdown, to_rich
    from hil.run.verify import exit_code, verify_lab

    limit = None if args.full else args.samples
    reference = Reference(args.reference) if args.reference else None  # None: the one each image's rounding matches
    labs = _image_labs(args, "verify", [Reference(r) for r in args.rounding or []], reference)
    results = [result for lab in labs for result in verify_lab(lab, limit)]  # one rack per rounding mode
    manifests = [lab.firmware[image] for lab in labs for image in dict.fromkeys((b.kind, b.model) for b in lab.boards)]
    tables = verification_tables(results) + [size_table(manifests)]
    if args.markdown:
        print("\n".join(to_markdown(t) for t in tables), end="")
    else:
        console = _console()
        for table in tables:
            console.print(to_rich(table))
    for failure in (f for r in results for f in r.failures):
        print(f"hil: {failure.slot}: {failure.stage} failed: {failure.reason}", file=sys.stderr)
    return exit_code(results)


def cmd_firmware_profile(args) -> int:
    import json

    from hil.errors import EXIT_INFRASTRUCTURE, EXIT_PASS
    from hil.report.profile import profile_table
    from hil.report.table import to_markdown, to_rich
    from hil.run.profile import SampleChoice, profile_lab

    (lab,) = _image_labs(args, "profile")
    profiles, failures = profile_lab(lab, SampleChoice(args.testset, args.sample), args.count)
    tables = [profile_table(p) for p in profiles]
    if args.markdown:
        print("\n".join(to_markdown(t) for t in tables), end="", file=sys.stderr if args.json else sys.stdout)
    else:
        console = _console(stderr=args.json)
        for table in tables:
            console.print(to_rich(table))
    if args.json:
        print(json.dumps([p.to_dict() for p in profiles], indent=1))
    for failure in failures:
        print(f"hil: {failure.slot}: {failure.stage} failed: {failure.reason}", file=sys.stderr)
    return EXIT_INFRASTRUCTURE if failures else EXIT_PASS


def cmd_init(args) -> int:
    from hil.lab.starter import write_starter_lab

    lab = write_starter_lab(Path(args.dir))
    print(lab.summary)
    print(f"next: hil run {lab.path}    (results go to {lab.path.parent / 'results'}/; the lab file is documented "
          "in docs/labs.md)")
    return 0


def _duration(text: str) -> float:
    """argparse's type for --wait: 30s, 10m, 2h in seconds (the parser says what is wrong)."""
    from hil.run.rack import parse_duration

    try:
        return parse_duration(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def cmd_lab_scan(args) -> int:
    from hil.lab.scan import find_ports, find_probes, pair, report

    print(report(pair(find_probes(args.probe), find_ports())), end="")
    return 0


def cmd_lab_schema(args) -> int:
    from hil.lab.schema import schema_text

    print(schema_text(), end="")
    return 0


def cmd_run(args) -> int:
    from hil.report.console import LiveProgress, json_summary, show
    from hil.report.run_files import write_run_files
    from hil.run.runner import execute, recorded_end

    if (args.lab is None) == (args.resume is None):
        raise UsageError("hil run: give a lab file (hil run labs.yaml) or a run to resume (hil run --resume RUN_DIR)")
    console = _console(stderr=args.json, piped_width=120)
    progress = LiveProgress(console)
    started = time.monotonic()
    try:
        outcome = execute(args.lab and Path(args.lab), args.resume and Path(args.resume), progress, args.baseline,
                          args.wait, args.profile)
    finally:
        progress.stop()
    with recorded_end(outcome.run_dir, outcome.run):  # a crash writing them ends the run in error, as any crash
        write_run_files(outcome)
    show(console, outcome, time.monotonic() - started)
    if args.json:
        print(json_summary(outcome))
    return outcome.verdict.exit_code


def cmd_sweep(args) -> int:
    import json
    from dataclasses import asdict

    from hil.lab.load import load_lab
    from hil.report.console import LiveProgress, recoveries_table, replay_table, sweep_table, verdict_lines
    from hil.report.profile import stage_split_table
    from hil.report.sweep_plot import SWEEP_PNG, plot
    from hil.report.table import to_rich
    from hil.run.sweep import judge_points, load_points, parse_thresholds, parse_window, replay, run_sweep

    taus = parse_thresholds(args.threshold)
    window = parse_window(args.window) if args.window else None
    lab = load_lab(Path(args.lab))
    console = _console(stderr=args.json, piped_width=120)
    if args.replay:
        predicted = judge_points(replay(lab, Path(args.replay), taus, window), args.max_accuracy_drop)
        measured = load_points(Path(args.measured)) if args.measured else None
        console.print(to_rich(replay_table(predicted, measured)))
        if args.json:
            print(json.dumps({"predicted": [asdict(p) for p in predicted],
                              "measured": [asdict(p) for p in measured or []]}, indent=1))
        return 0
    if args.window or args.measured:
        raise UsageError("hil sweep: --window and --measured go with --replay RUN (a full-path run)")
    progress = LiveProgress(console)
    try:
        outcome = run_sweep(lab, taus, progress, args.max_accuracy_drop, args.wait)
    finally:
        progress.stop()
    plot(outcome.points, outcome.sweep_dir / SWEEP_PNG)
    console.print(to_rich(sweep_table(outcome)))
    console.print(to_rich(stage_split_table(outcome.profiles)))
    if outcome.recoveries:
        console.print(to_rich(recoveries_table(outcome.recoveries)))
    console.print(verdict_lines(outcome.verdict, f"results in {outcome.sweep_dir}"))
    if args.json:
        print(json.dumps({"sweep_dir": str(outcome.sweep_dir), "verdict": asdict(outcome.verdict),
                          "points": [asdict(p) for p in outcome.points],
                          "profiles": [p.to_dict() for p in outcome.profiles.profiles]}, indent=1))
    return outcome.verdict.exit_code


def cmd_baseline_set(args) -> int:
    import getpass
    import platform

    from hil.store import files, results

    run_dir = Path(args.run_dir)
    run = files.read_run(run_dir)
    unfit = files.baseline_unfit(run, files.read_metrics(run_dir))
    if unfit and not args.force:
        raise BadInput(f"{run_dir}: run {run.id} cannot be a baseline: {'; '.join(unfit)}; give a finished run "
                       "that passed with every sample, or --force to set it anyway (recorded)")
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no user name in this environment
        user = "unknown"
    results.set_baseline(run_dir, run.lab.name, run.id, f"{user}@{platform.node()}", "; ".join(unfit) or None)
    print(f"baseline of lab {run.lab.name!r}: {run.id} (verdict {run.verdict.status})"
          + (f"; forced, though {'; '.join(unfit)}" if unfit else ""))
    return 0


def cmd_baseline_show(args) -> int:
    from hil.lab.load import load_lab
    from hil.report.history import baseline_table
    from hil.report.table import to_rich

    lab = load_lab(Path(args.lab))
    _console().print(to_rich(baseline_table(lab.results_dir, lab.name)))
    return 0


def _history_source(args) -> tuple[Path, str | None]:
    """The results folder `hil history` reads and the lab it keeps to: the lab file's own (its `results:`,
    relative to the lab, as `hil run` writes them), or every lab of `--results DIR`."""
    from hil.lab.load import load_lab

    if args.results is not None:
        if args.lab is not None:
            raise UsageError("hil history: give a lab file or --results DIR, not both")
        return Path(args.results), None
    lab = load_lab(Path(args.lab or "labs.yaml"))
    return lab.results_dir, lab.name


def cmd_history(args) -> int:
    from hil.report import trends
    from hil.report.history import headline_table, metric_table, runs_table
    from hil.report.history_plot import plot
    from hil.report.table import to_rich

    if args.metric is not None:
        trends.metric(args.metric)  # an unknown one is refused before anything is read
    if args.plot is not None and Path(args.plot).suffix.lower() != ".png":
        raise UsageError(f"hil history: --plot {args.plot}: name a .png file")
    results_dir, lab = _history_source(args)
    history = trends.load_history(results_dir, lab, args.board, args.testset, args.last)
    if args.metric:
        tables = [metric_table(history, args.metric)]
    else:  # the runs (those without a metrics.json too), then their headline figures
        tables = [runs_table(results_dir, lab, args.last)] + ([headline_table(history)] if history.runs else [])
    console = _console()
    for table in tables:
        console.print(to_rich(table))
    if args.plot is not None:
        if not history.runs:
            raise BadInput(f"{results_dir}: no run has a metrics.json to plot; run `hil run` to its end first")
        print(f"wrote {plot(history, [args.metric] if args.metric else list(trends.HEADLINE), Path(args.plot))}")
    return 0


def _age(text: str) -> float:
    """argparse's type for --older-than: 30d, 12h, 90m in seconds."""
    from hil.run.rack import parse_duration

    if text[:-1].isdigit() and text.endswith("d"):
        return int(text[:-1]) * 86400.0
    try:
        return parse_duration(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an age; give a whole number and d, h, m or s, "
                                         "e.g. 30d, 12h") from None


def _positive(text: str) -> int:
    """argparse's type for a count of runs: a whole number from 1."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of runs; give a whole number from 1")
    return int(text)


def cmd_prune(args) -> int:
    from hil.lab.load import load_lab
    from hil.store import retention

    if args.keep is None and args.older_than is None:
        raise UsageError("hil prune: say what to keep: --keep N (the newest N runs), --older-than AGE (30d), "
                         "or both")
    lab = load_lab(Path(args.lab))
    rules = retention.Retention(args.keep, args.older_than, args.include_unfinished)
    found = retention.candidates(lab.results_dir, lab.name, rules)
    removed = 0
    for run in found:
        if run.kept is not None:
            print(f"kept {run.path} (started {run.started}, {run.status}): {run.kept}")
            continue
        if not args.dry_run:
            retention.remove(lab.results_dir, run)
        removed += 1
        print(f"{'would remove' if args.dry_run else 'removed'} {run.path} (started {run.started}, {run.status})")
    print(f"{'would remove' if args.dry_run else 'removed'} {removed} run folder{'' if removed == 1 else 's'} "
          f"of lab {lab.name!r} in {lab.results_dir}")
    return 0


def _lab_board(lab_file: str, slot: str | None):
    """The validated lab, and the slot checked to be one of its boards."""
    from hil.lab.load import load_lab

    lab = load_lab(Path(lab_file))
    if slot is not None and slot not in {spec.slot for spec in lab.boards}:
        raise BadInput(f"{lab.file}: no board in slot {slot!r}; its boards: "
                       f"{', '.join(spec.slot for spec in lab.boards)}")
    return lab


def cmd_board_list(args) -> int:
    from hil.report.boards import boards_table
    from hil.report.table import to_rich

    _console().print(to_rich(boards_table(_lab_board(args.lab, None))))
    return 0


def cmd_board_health(args) -> int:
    from hil.report.boards import health_table
    from hil.report.table import to_rich

    _console().print(to_rich(health_table(_lab_board(args.lab, args.slot), args.slot)))
    return 0


def cmd_board_quarantine(args) -> int:
    from hil.store import health

    lab = _lab_board(args.lab, args.slot)
    if not args.reason.strip():
        raise UsageError("hil board quarantine: --reason is empty; say why the board is set aside")
    entry = health.quarantine(lab.results_dir, lab.name, args.slot, " ".join(args.reason.split()))
    print(f"{args.slot}: quarantined since {entry.since}: {entry.reason}; runs of {lab.file} leave it out until "
          f"`hil board release {lab.file} {args.slot}`")
    return 0


def cmd_board_release(args) -> int:
    from hil.store import health

    lab = _lab_board(args.lab, args.slot)
    entry = health.release(lab.results_dir, lab.name, args.slot)
    if entry is None:
        raise BadInput(f"{lab.file}: board {args.slot!r} is not quarantined; `hil board list {lab.file}` shows "
                       "the boards' states")
    print(f"{args.slot}: released (was quarantined since {entry.since}: {entry.reason}); the next run checks it "
          "again, and it has its failed checks in a row counted afresh")
    return 0


class HilArgumentParser(argparse.ArgumentParser):
    """Every parser of `hil`, subcommands' too (add_subparsers makes them of this class): a wrong command
    line is its own exit code, never 2 (argparse's, which hil uses for infrastructure), and an option
    is only ever its whole name: `--baselin` is refused, not taken for `--baseline`."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}; `{self.prog} --help` shows the usage\n")


def exit_codes_text() -> str:
    """The exit codes, for `hil --help`."""
    return "exit codes:\n" + "".join(f"  {code:>3}  {meaning}\n" for code, meaning in EXIT_CODES.items())


def cmd_board_serve(args) -> int:
    from hil.hw.emulated.served import SERVED_KINDS, serve

    if args.kind not in SERVED_KINDS:
        raise BadInput(f"hil board serve: --kind {args.kind} cannot be served; served kinds: {', '.join(SERVED_KINDS)}")
    return serve(args)


def add_board_commands(commands) -> None:
    """`hil board ...`: a lab's boards, their health history and quarantine (docs/labs.md, Health)."""
    board = commands.add_parser("board", help="a lab's boards: state, health history, quarantine").add_subparsers(
        dest="action", required=True)
    listing = board.add_parser("list", help="the lab's boards with their state and last health check")
    listing.add_argument("lab", help="the lab file (labs.yaml); its results folder holds the catalog")
    listing.set_defaults(run=cmd_board_list)
    history = board.add_parser("health", help="one board's health checks, oldest first")
    quarantine = board.add_parser("quarantine", help="set a board aside: runs do not bring it up until released")
    release = board.add_parser("release", help="end a board's quarantine: the next run checks it again")
    for action, run in ((history, cmd_board_health), (quarantine, cmd_board_quarantine),
                        (release, cmd_board_release)):
        action.add_argument("lab", help="the lab file (labs.yaml)")
        action.add_argument("slot", help="the board's slot")
        action.set_defaults(run=run)
    quarantine.add_argument("--reason", required=True, help="why, one line: shown by runs and `hil board list`")
    serve = board.add_parser("serve", help="serve an emulated board as a physical one, for a labgrid exporter: its "
                             "probe on TCP, its serial port a pty (docs/distributed.md)")
    serve.set_defaults(run=cmd_board_serve)
    serve.add_argument("--kind", default="nucleo-l432kc", help="the board kind (default nucleo-l432kc)")
    serve.add_argument("--unique-id", help="the probe's unique id (default: served-PID)")
    serve.add_argument("--host", default="127.0.0.1", help="the address the probe listens on (0.0.0.0: all)")
    serve.add_argument("--probe-port", type=int, default=0, metavar="PORT",
                       help="the probe server's TCP port (default: a free one, printed)")
    serve.add_argument("--pty-link", metavar="PATH", help="a symlink to the board's serial port (its pty)")
    serve.add_argument("--exporter-group", metavar="FILE",
                       help="write the labgrid exporter's resource group for the board there (exporter.yaml.d/)")
    serve.add_argument("--group", help="that group's name (default: the unique id)")
    serve.add_argument("--monitor", action="store_true",
                       help="clip an emulated measurement unit to the board's pins, on a pty of its own (`monitor`)")
    serve.add_argument("--monitor-truth", default=os.devnull, metavar="FILE",
                       help="with --monitor: where the unit writes each window's true energy")


def add_logging_options(parser: argparse.ArgumentParser, default=None) -> None:
    """-v and --log-file, before the command (`hil -vv run`) or, for the commands that drive
    boards, after it (`hil run labs.yaml -vv`); there `default` is SUPPRESS, so that an option
    given before the command is not reset. docs/logging.md."""
    parser.add_argument("-v", "--verbose", action="count", default=0 if default is None else default,
                        help="log to stderr: -v what hil does, -vv debug detail (probe and flash logs)")
    parser.add_argument("--log-file", metavar="PATH", default=default,
                        help="append hil's debug log and every frame each board and unit link sends and "
                        "receives to PATH, as JSON lines (docs/logging.md)")


# `hil <command> --help` shows what the command does and these examples (each one parses: tests/unit/test_cli_usage.py).
EXAMPLES: dict[str, list[str]] = {
    "init": ["hil init my-lab"],
    "run": ["hil run labs.yaml", "hil run labs.yaml --baseline baseline --json",
            "hil run labs.yaml --wait 30m", "hil run --resume results/20261201-020000-ab12",
            "hil run labs.yaml -vv --log-file wire.jsonl"],
    "sweep": ["hil sweep labs.yaml --threshold 0.5:0.95", "hil sweep labs.yaml --threshold 0.5:0.95:0.05 "
              "--max-accuracy-drop 1", "hil sweep labs.yaml --threshold 0.5:0.95 --replay results/20261201-020000-ab12"],
    "baseline": ["hil baseline set results/20261201-020000-ab12", "hil baseline show labs.yaml"],
    "baseline set": ["hil baseline set results/20261201-020000-ab12",
                     "hil baseline set results/20261201-020000-ab12 --force"],
    "baseline show": ["hil baseline show labs.yaml"],
    "lab": ["hil lab scan", "hil lab schema"],
    "lab scan": ["hil lab scan"],
    "lab schema": ["hil lab schema"],
    "history": ["hil history labs.yaml", "hil history labs.yaml --metric latency_ms_p50 --board an386-digits",
                "hil history labs.yaml --last 14 --plot trends.png"],
    "prune": ["hil prune labs.yaml --keep 30", "hil prune labs.yaml --older-than 90d --dry-run"],
    "board": ["hil board list labs.yaml", "hil board release labs.yaml an386-digits"],
    "board list": ["hil board list labs.yaml"],
    "board health": ["hil board health labs.yaml an386-digits"],
    "board quarantine": ["hil board quarantine labs.yaml an386-digits --reason 'USB cable loose'"],
    "board release": ["hil board release labs.yaml an386-digits"],
    "board serve": ["hil board serve --kind nucleo-l432kc --probe-port 5555 --pty-link /run/hil/rack-a-1.tty "
                    "--exporter-group /etc/labgrid/exporter.yaml.d/rack-a-1.yaml --group rack-a-1"],
    "model": ["hil model info fixtures/models/qute-digits", "hil model eval fixtures/models/qute-digits"],
    "model info": ["hil model info fixtures/models/qute-digits"],
    "model eval": ["hil model eval fixtures/models/qute-digits",
                   "hil model eval fixtures/models/qute-digits --reference tflm"],
    "model train": ["hil model train qute-digits"],
    "firmware": ["hil firmware build", "hil firmware verify --samples 20"],
    "firmware generate": ["hil firmware generate", "hil firmware generate qute-digits"],
    "firmware build": ["hil firmware build"],
    "firmware conformance": ["hil firmware conformance"],
    "firmware verify": ["hil firmware verify --samples 20", "hil firmware verify --full"],
    "firmware profile": ["hil firmware profile --board mps2-an386 --model qute-digits",
                         "hil firmware profile --count 10 --testset shift-s2 --sample 3 --json"],
    "testsets": ["hil testsets generate"],
    "testsets generate": ["hil testsets generate qute-digits --seed 7 --out /tmp/testsets"],
}


def describe_commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> None:
    """Give every subcommand its help line as description and its EXAMPLES as epilog."""
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        helps = {choice.dest: choice.help for choice in action._choices_actions}
        for name, sub in action.choices.items():
            command = " ".join((*path, name))
            help_line = helps.get(name) or ""
            sub.description = sub.description or (help_line[:1].upper() + help_line[1:] + ".")
            examples = "\n".join(f"  {line}" for line in EXAMPLES.get(command, []))
            sub.epilog = f"examples:\n{examples}\n\nexit codes: `hil --help`" if examples else sub.epilog
            sub.formatter_class = argparse.RawDescriptionHelpFormatter
            describe_commands(sub, (*path, name))


def build_parser() -> argparse.ArgumentParser:
    parser = HilArgumentParser(prog="hil", description="Hardware-in-the-loop lab for QUTE TinyML models.",
                               epilog=exit_codes_text(), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"hil {__version__}")
    add_logging_options(parser)
    commands = parser.add_subparsers(dest="command", required=True)

    init = commands.add_parser("init", help="write a starter lab (labs.yaml) that uses the models, test sets and "
                               "images hil came with")
    init.add_argument("dir", metavar="DIR", help="the folder to write labs.yaml into (made if missing)")
    init.set_defaults(run=cmd_init)

    run = commands.add_parser("run", help="run a lab: flash, stream, reconcile, report")
    run.add_argument("lab", nargs="?", help="the lab file (labs.yaml)")
    run.add_argument("--resume", metavar="RUN_DIR", help="complete an interrupted run (results/<run-id>)")
    run.add_argument("--json", action="store_true", help="print a machine-readable summary on stdout")
    run.add_argument("--baseline", metavar="RUN", help="compare against a run: results/<run-id>, a run id, "
                     "`baseline` (set with `hil baseline set`) or `latest-pass`")
    run.add_argument("--wait", type=_duration, default=0.0, metavar="DURATION",
                     help="queue up to this long (30s, 10m, 2h) for boards another run holds; without it, "
                     "a busy board is refused at once (exit 2)")
    run.add_argument("--profile", action="store_true", help="after streaming, each board times every layer of "
                     "its model once (PROFILE): a per-layer table on the console, in profile.json and report.html")
    run.set_defaults(run=cmd_run)

    sweep = commands.add_parser("sweep", help="sweep the early-exit threshold on the devices")
    sweep.add_argument("lab", help="the lab file (labs.yaml)")
    sweep.add_argument("--threshold", required=True, metavar="START:STOP[:STEP]",
                       help="thresholds, e.g. 0.5:0.95 (step 0.05); τ = 1 is always added as the reference")
    sweep.add_argument("--max-accuracy-drop", type=float, metavar="POINTS",
                       help="recommend the cheapest τ whose clean accuracy is within this many points of τ = 1")
    sweep.add_argument("--replay", metavar="RUN", help="predict the sweep on the host from a full-path run "
                       "(made at threshold 1.0) instead of running the boards")
    sweep.add_argument("--measured", metavar="SWEEP", help="with --replay: a measured sweep to show beside it")
    sweep.add_argument("--window", metavar="W0:W1", help="with --replay: also a window cascade that defers to "
                       "stage 2 only when W0 <= exit confidence <= W1")
    sweep.add_argument("--json", action="store_true", help="print the sweep's points on stdout")
    sweep.add_argument("--wait", type=_duration, default=0.0, metavar="DURATION",
                       help="queue up to this long for boards another run holds, as `hil run --wait`")
    sweep.set_defaults(run=cmd_sweep)

    baseline = commands.add_parser("baseline", help="the run that later runs are compared against").add_subparsers(
        dest="action", required=True)
    baseline_set = baseline.add_parser("set", help="make a finished run that passed with every sample its lab's "
                                       "baseline")
    baseline_set.add_argument("run_dir", metavar="RUN", help="results/<run-id>")
    baseline_set.add_argument("--force", action="store_true", help="set a run that is unfit anyway (an error "
                              "verdict, missing samples); the catalog records that, and why")
    baseline_set.set_defaults(run=cmd_baseline_set)
    baseline_show = baseline.add_parser("show", help="the lab's baseline: run, when and by whom it was set, its "
                                        "verdict, samples, git revision, firmware and model hashes")
    baseline_show.add_argument("lab", nargs="?", default="labs.yaml", help="the lab file (default: labs.yaml)")
    baseline_show.set_defaults(run=cmd_baseline_show)

    lab_cmd = commands.add_parser("lab", help="the lab's hardware").add_subparsers(dest="action", required=True)
    scan = lab_cmd.add_parser("scan", help="list attached probes and serial ports, paired by USB serial number, "
                              "and print a boards: block for labs.yaml")
    scan.add_argument("--probe", action="append", default=[], metavar="remote:HOST:PORT",
                      help="also a pyOCD probe server (`pyocd server`), which discovery cannot find; repeatable")
    scan.set_defaults(run=cmd_lab_scan)
    schema = lab_cmd.add_parser("schema", help="print the JSON Schema of labs.yaml, for editors "
                                "(docs/labs.schema.json is a copy)")
    schema.set_defaults(run=cmd_lab_schema)

    history = commands.add_parser("history", help="a lab's runs and their metrics, run after run: a table, "
                                  "and a plot with --plot")
    history.add_argument("lab", nargs="?", help="the lab file (default: labs.yaml); its results folder (as "
                         "`hil run` writes it, relative to the lab) holds the catalog, and only its runs are shown")
    history.add_argument("--results", metavar="DIR", help="instead of a lab: a results folder, every lab's runs")
    history.add_argument("--metric", help="one metric of metrics.json, e.g. accuracy, ece, latency_ms_p50, "
                         "energy_uj (per exit path); default: the headline ones")
    history.add_argument("--board", help="only this board slot (default: every board)")
    history.add_argument("--testset", help="only this test set (default: every test set)")
    history.add_argument("--last", type=_positive, metavar="N", help="only the newest N runs (default: all)")
    history.add_argument("--plot", metavar="FILE.png", help="also draw the trend to FILE.png, one line per "
                         "board × test set (× exit path)")
    history.set_defaults(run=cmd_history)

    prune = commands.add_parser("prune", help="delete a lab's old run folders and their catalog rows; never a "
                                "baseline, nor an unfinished run unless asked")
    prune.add_argument("lab", help="the lab file (labs.yaml); only its runs are pruned")
    prune.add_argument("--keep", type=_positive, metavar="N", help="keep the newest N runs")
    prune.add_argument("--older-than", type=_age, metavar="AGE", help="keep runs that started less than AGE "
                       "ago (30d, 12h); with --keep too, a run goes only when neither keeps it")
    prune.add_argument("--include-unfinished", action="store_true", help="also remove running and interrupted "
                       "runs (they can otherwise be finished with `hil run --resume`)")
    prune.add_argument("--dry-run", action="store_true", help="print what would be removed, remove nothing")
    prune.set_defaults(run=cmd_prune)

    add_board_commands(commands)

    model = commands.add_parser("model", help="QUTE models: card, host evaluation, training").add_subparsers(
        dest="action", required=True)
    info = model.add_parser("info", help="show a model card")
    info.add_argument("model", help="a model name under fixtures/models/ or a model directory")
    info.set_defaults(run=cmd_model_info)
    evaluate = model.add_parser("eval", help="host-reference metrics on every test set of a model")
    evaluate.add_argument("model")
    evaluate.add_argument("--testsets", help="directory of the test sets (default fixtures/testsets/<model>)")
    evaluate.add_argument("--markdown", action="store_true", help="print Markdown tables (as in docs/models.md)")
    evaluate.add_argument("--reference", choices=["litert", "tflm"], default="litert",
                          help="the host interpreter: LiteRT's reference kernels (default) or TFLM's; the "
                               "firmware matches either (docs/decisions.md, Which reference)")
    evaluate.set_defaults(run=cmd_model_eval)
    train = model.add_parser("train", help="train and export a model (needs the train extra)")
    train.add_argument("model", choices=MODEL_NAMES)
    train.add_argument("--out", help="output directory (default fixtures/models/<model>)")
    train.set_defaults(run=cmd_model_train)

    fw = commands.add_parser("firmware", help="QUTE firmware: generate, build, verify, profile").add_subparsers(
        dest="action", required=True)
    fw_generate = fw.add_parser("generate", help="generate the C code of models (firmware/generated/)")
    fw_generate.add_argument("models", nargs="*")
    fw_generate.set_defaults(run=cmd_firmware_generate)
    fw_build = fw.add_parser("build", help="build every image and write the manifests (firmware/prebuilt/)")
    fw_build.add_argument("--out", help="output directory (default firmware/prebuilt)")
    fw_build.set_defaults(run=cmd_firmware_build)
    fw_conformance = fw.add_parser("conformance", help="generate the kernel conformance suite from the host reference "
                                   "(hil/firmware/conformance_suite.json and its sha256)")
    fw_conformance.set_defaults(run=cmd_firmware_conformance)
    fw_verify = fw.add_parser("verify", help="run images on boards against the host reference: every prebuilt "
                              "image on an emulated board, or a lab's boards (physical ones too) with --lab")
    fw_verify.add_argument("--lab", help="the lab file whose boards (emulated or physical) run their images")
    fw_verify.add_argument("--board", action="append", help="board kind (repeatable; default all)")
    fw_verify.add_argument("--model", action="append", help="model (repeatable; default all)")
    fw_verify.add_argument("--samples", type=int, default=20, help="samples per test set (default 20)")
    fw_verify.add_argument("--full", action="store_true", help="every sample of every test set")
    fw_verify.add_argument("--rounding", action="append", choices=["litert", "tflm"],
                           help="the prebuilt images of this kernel rounding mode (repeatable; default litert; "
                                "not with --lab)")
    fw_verify.add_argument("--reference", choices=["litert", "tflm"],
                           help="the host reference to check against (default: the one the images' rounding "
                                "mode matches, docs/firmware.md)")
    fw_verify.add_argument("--markdown", action="store_true", help="print Markdown tables (as in docs/firmware.md)")
    fw_verify.set_defaults(run=cmd_firmware_verify)
    fw_profile = fw.add_parser("profile", help="time every layer on boards (PROFILE): op, output shape, MACs, "
                               "cycles, cycles/MAC per layer; every prebuilt image on an emulated board, or a "
                               "lab's boards with --lab")
    fw_profile.add_argument("--lab", help="the lab file whose boards (emulated or physical) run their images")
    fw_profile.add_argument("--board", action="append", help="board kind (repeatable; default all); with --lab, "
                            "the lab's boards of these kinds")
    fw_profile.add_argument("--model", action="append", help="model (repeatable; default all)")
    fw_profile.add_argument("--testset", help="the test set the sample comes from (default: the model's first)")
    fw_profile.add_argument("--sample", type=int, default=0, metavar="INDEX",
                            help="the sample's index in the test set (default 0)")
    fw_profile.add_argument("--count", type=int, default=1, metavar="N",
                            help="runs of the sample to average, 1..1000 (default 1)")
    fw_profile.add_argument("--json", action="store_true", help="print the profiles as JSON on stdout (the "
                            "tables go to stderr)")
    fw_profile.add_argument("--markdown", action="store_true", help="print Markdown tables (as in docs/firmware.md)")
    fw_profile.set_defaults(run=cmd_firmware_profile)

    testsets = commands.add_parser("testsets", help="test sets").add_subparsers(dest="action", required=True)
    generate = testsets.add_parser("generate", help="generate the test sets of models from a seed")
    generate.add_argument("models", nargs="*", help="model names (default: all)")
    # Its default is the test sets' DEFAULT_SEED, read when generating: importing hil.model.testsets here would
    # bring numpy and scipy.ndimage into every `hil --help`.
    generate.add_argument("--seed", type=int, help="the corruptions' random seed (default: the shipped test sets' own)")
    generate.add_argument("--out", help="output directory (default fixtures/testsets)")
    generate.set_defaults(run=cmd_testsets_generate)
    for board_command in (run, sweep, fw_verify, fw_profile):
        add_logging_options(board_command, argparse.SUPPRESS)
    describe_commands(parser)
    return parser


def _terminate(signum, frame) -> None:
    # SIGTERM unwinds like Ctrl-C, so every board is shut down and every emulator stopped.
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    signal.signal(signal.SIGTERM, _terminate)
    args = build_parser().parse_args(argv)
    try:
        from hil.logs import configure

        configure(args.verbose, args.log_file and Path(args.log_file))
        return args.run(args)
    except HilError as error:
        print(f"hil: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt as interrupt:
        print(f"hil: {interrupt.message if isinstance(interrupt, Interrupted) else 'interrupted'}", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())

