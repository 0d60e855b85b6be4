"""The `hil` command line. Exit codes: 0 pass, 1 regression or mismatch, 2 infrastructure
failure, 3 bad input, 4 results disk unwritable, 130 interrupted (see README)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from hil.errors import BadInput, HilError
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
    from hil.report.model import evaluation_tables
    from hil.report.table import to_markdown, to_rich
    from hil.model.testsets import load_model_testsets

    card = load_model(args.model)
    tables = evaluation_tables(evaluate_model(card, load_model_testsets(card, args.testsets)))
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
        print(f"{manifest.board}/{manifest.model}: flash {manifest.flash_bytes} B, RAM {manifest.ram_bytes} B, "
              f"image sha256 {manifest.image_sha256[:16]}")
    return 0


def cmd_firmware_verify(args) -> int:
    from hil.firmware import build as firmware
    from hil.lab.load import load_lab
    from hil.report.firmware import size_table, verification_tables
    from hil.report.table import to_markdown, to_rich
    from hil.run.verify import exit_code, lab_images, no_twin_reason, prebuilt_lab, verify_lab

    limit = None if args.full else args.samples
    if args.lab:
        lab = lab_images(load_lab(Path(args.lab)), args.board, args.model)
        if not lab.boards:
            raise BadInput(f"{args.lab}: no board of this lab is of the --board kinds and --model models given; "
                           "name kinds and models its boards have")
    else:
        kinds = args.board or firmware.BOARDS
        for reason in filter(None, map(no_twin_reason, kinds)):
            print(f"hil: {reason}", file=sys.stderr)
        kinds = [kind for kind in kinds if no_twin_reason(kind) is None]
        if not kinds:
            raise BadInput("no --board kind given has an emulated twin; verify physical boards with --lab")
        lab = prebuilt_lab(kinds, args.model or firmware.MODELS)
    results = verify_lab(lab, limit)
    manifests = [lab.firmware[image] for image in dict.fromkeys((b.kind, b.model) for b in lab.boards)]
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


def cmd_run(args) -> int:
    from hil.report.console import LiveProgress, json_summary, show
    from hil.report.run_files import write_run_files
    from hil.run.runner import execute, recorded_end

    if (args.lab is None) == (args.resume is None):
        raise BadInput("hil run: give a lab file (hil run labs.yaml) or a run to resume (hil run --resume RUN_DIR)")
    console = _console(stderr=args.json, piped_width=120)
    progress = LiveProgress(console)
    started = time.monotonic()
    try:
        outcome = execute(args.lab and Path(args.lab), args.resume and Path(args.resume), progress, args.baseline,
                          args.wait)
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
    from hil.report.console import LiveProgress, replay_table, sweep_table, verdict_lines
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
        raise BadInput("hil sweep: --window and --measured go with --replay RUN (a full-path run)")
    progress = LiveProgress(console)
    try:
        outcome = run_sweep(lab, taus, progress, args.max_accuracy_drop)
    finally:
        progress.stop()
    plot(outcome.points, outcome.sweep_dir / SWEEP_PNG)
    console.print(to_rich(sweep_table(outcome)))
    console.print(verdict_lines(outcome.verdict, f"results in {outcome.sweep_dir}"))
    if args.json:
        print(json.dumps({"sweep_dir": str(outcome.sweep_dir), "verdict": asdict(outcome.verdict),
                          "points": [asdict(p) for p in outcome.points]}, indent=1))
    return outcome.verdict.exit_code


def cmd_baseline_set(args) -> int:
    from hil.store import files, results

    run_dir = Path(args.run_dir)
    run = files.read_run(run_dir)
    if run.status != files.RunStatus.FINISHED:
        raise BadInput(f"{run_dir}: run {run.id} is {run.status}; finish it with `hil run --resume` first")
    results.set_baseline(run_dir, run.lab.name, run.id)
    print(f"baseline of lab {run.lab.name!r}: {run.id} (verdict {run.verdict.status})")
    return 0


def cmd_history(args) -> int:
    from hil.report.history import metric_trend, runs_table
    from hil.report.table import to_rich

    console = _console()
    console.print(to_rich(metric_trend(Path(args.results), args.metric, args.board, args.testset) if args.metric
                          else runs_table(Path(args.results))))
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
        raise BadInput("hil board quarantine: --reason is empty; say why the board is set aside")
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hil", description="Hardware-in-the-loop lab for QUTE TinyML models.")
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
    sweep.set_defaults(run=cmd_sweep)

    baseline = commands.add_parser("baseline", help="the run that later runs are compared against").add_subparsers(
        dest="action", required=True)
    baseline_set = baseline.add_parser("set", help="make a finished run its lab's baseline")
    baseline_set.add_argument("run_dir", metavar="RUN", help="results/<run-id>")
    baseline_set.set_defaults(run=cmd_baseline_set)

    lab_cmd = commands.add_parser("lab", help="the lab's hardware").add_subparsers(dest="action", required=True)
    scan = lab_cmd.add_parser("scan", help="list attached probes and serial ports, paired by USB serial number, "
                              "and print a boards: block for labs.yaml")
    scan.add_argument("--probe", action="append", default=[], metavar="remote:HOST:PORT",
                      help="also a pyOCD probe server (`pyocd server`), which discovery cannot find; repeatable")
    scan.set_defaults(run=cmd_lab_scan)

    history = commands.add_parser("history", help="past runs from the catalog, or one metric's trend")
    history.add_argument("--results", default="results", help="the results folder (default: results)")
    history.add_argument("--metric", help="a per board and test set metric, e.g. accuracy, exit_rate, max_steps")
    history.add_argument("--board", help="with --metric: the board slot")
    history.add_argument("--testset", help="with --metric: the test set")
    history.set_defaults(run=cmd_history)

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
    evaluate.set_defaults(run=cmd_model_eval)
    train = model.add_parser("train", help="train and export a model (needs the train extra)")
    train.add_argument("model", choices=MODEL_NAMES)
    train.add_argument("--out", help="output directory (default fixtures/models/<model>)")
    train.set_defaults(run=cmd_model_train)

    fw = commands.add_parser("firmware", help="QUTE firmware: generate, build, verify").add_subparsers(
        dest="action", required=True)
    fw_generate = fw.add_parser("generate", help="generate the C code of models (firmware/generated/)")
    fw_generate.add_argument("models", nargs="*")
    fw_generate.set_defaults(run=cmd_firmware_generate)
    fw_build = fw.add_parser("build", help="build every image and write the manifests (firmware/prebuilt/)")
    fw_build.add_argument("--out", help="output directory (default firmware/prebuilt)")
    fw_build.set_defaults(run=cmd_firmware_build)
    fw_verify = fw.add_parser("verify", help="run images on boards against the host reference: every prebuilt "
                              "image on an emulated board, or a lab's boards (physical ones too) with --lab")
    fw_verify.add_argument("--lab", help="the lab file whose boards (emulated or physical) run their images")
    fw_verify.add_argument("--board", action="append", help="board kind (repeatable; default all)")
    fw_verify.add_argument("--model", action="append", help="model (repeatable; default all)")
    fw_verify.add_argument("--samples", type=int, default=20, help="samples per test set (default 20)")
    fw_verify.add_argument("--full", action="store_true", help="every sample of every test set")
    fw_verify.add_argument("--markdown", action="store_true", help="print Markdown tables (as in docs/firmware.md)")
    fw_verify.set_defaults(run=cmd_firmware_verify)

    testsets = commands.add_parser("testsets", help="test sets").add_subparsers(dest="action", required=True)
    generate = testsets.add_parser("generate", help="generate the test sets of models from a seed")
    generate.add_argument("models", nargs="*", help="model names (default: all)")
    # Its default is the test sets' DEFAULT_SEED, read when generating: importing hil.model.testsets here would
    # bring numpy and scipy.ndimage into every `hil --help`.
    generate.add_argument("--seed", type=int, help="the corruptions' random seed (default: the shipped test sets' own)")
    generate.add_argument("--out", help="output directory (default fixtures/testsets)")
    generate.set_defaults(run=cmd_testsets_generate)
    for board_command in (run, sweep, fw_verify):
        add_logging_options(board_command, argparse.SUPPRESS)
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
    except KeyboardInterrupt:
        print("hil: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

