"""``labctl``: run, check and inspect experiments.

    labctl run configs/plating-overnight.yaml     # run on the lab the file names (simulated by default);
                                                  # --bec: bluesky's BestEffortCallback and a LiveTable of the fits
                                                  # Ctrl-C pauses (cell at open circuit), again aborts
    labctl check configs/plating-overnight.yaml   # validate, and estimate durations by a simulated dry run
    labctl doctor configs/lab-sim.yaml            # reach and read every instrument of a lab, writing nothing
    labctl plans                                  # the plans and their arguments, units and defaults
    labctl runs [--json]                          # what is stored
    labctl show UID                               # summary and a PNG of one run
    labctl report UID                             # figures and an HTML summary of fits and stop reason
    labctl export UID --format csv|netcdf|bdf|battinfo|rocrate   # a run (or its sequence) to files
    labctl recover                                # write runs the server missed in from the journal
    labctl dashboard [--data-dir data]            # a live web page of the lab and its runs
    labctl serve DATA_DIR [--port 8000]           # serve a data directory to other tools (one server; labctl writes through it)
    labctl serve --postgres U@H:P --storage DIR   # the lab's data server: PostgreSQL, an API key per rig (--add-key RIG)
    labctl shell                                  # IPython with a RunEngine, the lab and the catalog
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
from pathlib import Path

from labctl.core.errors import DataDirectoryMissing, ExitCode, LabctlError, UsageError

DEFAULT_LAB = Path("configs/lab-sim.yaml")
EXIT_DEADLINE = 30.0  # s from SIGTERM, SIGHUP or a second Ctrl-C to the process gone, cleanup or not
TRACEBACK_ENV = "LABCTL_TRACEBACK"  # set to 1 to see the traceback of an internal error

EXIT_CODES = """exit codes:
  0  success            1  a run did not succeed (failed, aborted, interrupted)
  2  usage error        3  invalid experiment or lab file
  4  instrument or storage unreachable (or no data directory there)
  70 internal error (a bug in labctl)   130 interrupted outside a run"""


def main(argv: list[str] | None = None) -> int:
    """Run the ``labctl`` command line; return its exit code (an :class:`~labctl.core.errors.ExitCode`).

    Every error labctl raises on purpose (:class:`~labctl.core.errors.LabctlError`, each with its own
    ``exit_code``) is printed as one ``error:`` line; a subcommand only raises.
    """
    from labctl.progress import survive_closed_pipes

    # A reader that goes away (| head, tee killed by Ctrl-C) must not stop the cleanup.
    with survive_closed_pipes():
        return _main(argv)


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or ExitCode.SUCCESS)
    except LabctlError as err:
        return fail(err, err.exit_code)
    except KeyboardInterrupt:
        return fail("interrupted", ExitCode.INTERRUPTED)
    except OSError as err:  # a disk or a network failing under labctl, not a mistake of the user's
        return fail(_os_error(err), ExitCode.UNREACHABLE)
    except Exception as err:  # noqa: BLE001 - a bug: one line, the traceback on request
        if os.environ.get(TRACEBACK_ENV):
            raise
        return fail(f"internal error (a bug in labctl): {type(err).__name__}: {err} "
                    f"(set {TRACEBACK_ENV}=1 for the traceback)", ExitCode.INTERNAL)


def fail(message, code: ExitCode) -> int:
    """Print ``error: message`` on stderr (each line of a multi-line message prefixed) and return ``code``."""
    for line in str(message).splitlines() or [""]:
        print(f"error: {line}", file=sys.stderr)
    return int(code)


def _os_error(err: OSError) -> str:
    where = f"{err.filename}: " if err.filename else ""
    return f"{where}{err.strerror or err}"


class Parser(argparse.ArgumentParser):
    """argparse with a one-line ``error:`` for usage mistakes (exit code 2), and examples in ``--help``."""

    def error(self, message: str):
        self.exit(ExitCode.USAGE, f"error: {message} (see {self.prog} --help)\n")


HELP = argparse.RawDescriptionHelpFormatter


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not allowed: at least 1")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text} is not allowed: a number above 0")
    return value


def version() -> str:
    """labctl's version and the bluesky, ophyd and tiled it runs on."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return f"labctl {installed('labctl')}"
    except PackageNotFoundError:
        return "labctl (not installed)"


def _seed(text: str) -> int:
    """Parse ``--seed``: a whole number from 0 to 2**63 - 1."""
    if not text.isdigit() or int(text) > 2**63 - 1:
        raise argparse.ArgumentTypeError(f"must be a whole number from 0 to 2**63 - 1, got {text!r}")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    """The command line: every command with its options, help and examples."""
    parser = Parser(prog="labctl", description=__doc__.splitlines()[0].replace("``", ""), formatter_class=HELP,
                    epilog="examples:\n" + "\n".join(__doc__.splitlines()[2:]).rstrip() + "\n\n" + EXIT_CODES)
    parser.add_argument("--version", action="version", version=version())
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser, metavar="COMMAND")

    def command(name: str, func, help: str, example: str = "") -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help, formatter_class=HELP,
                           epilog=(f"example:\n  {example}\n\n" if example else "") + EXIT_CODES)
        p.set_defaults(func=func)
        p.add_argument("--lab", type=Path, metavar="LAB.yaml",
                       help="lab file (default: the one the experiment names, else configs/lab-sim.yaml)")
        p.add_argument("--data-dir", type=Path, metavar="DIR",
                       help="where runs are stored (default: the lab file's storage.data_dir); "
                            "commands that read runs need it to exist")
        return p

    p = command("run", cmd_run, "run an experiment file",
                "labctl run configs/plating-overnight.yaml --pace 3600   # Ctrl-C pauses, again aborts")
    p.add_argument("experiment", type=Path, metavar="EXPERIMENT.yaml", help="the experiment file to run")
    p.add_argument("--pace", type=positive_float, metavar="X",
                   help="simulated seconds per wall second (demo); default: as fast as possible")
    p.add_argument("--plot", action=argparse.BooleanOptionalAction, default=None,
                   help="show voltage, the latest spectrum and the fitted resistances live "
                        "(default: when a display and a Qt binding are available; pip install -e '.[live]')")
    p.add_argument("--seed", type=_seed, help="the simulators' random seed (default: the experiment's, else the lab file's)")
    p.add_argument("--bec", action="store_true",
                   help="print bluesky's BestEffortCallback table of the voltage and a LiveTable of the impedance fits")
    p = command("check", cmd_check, "validate an experiment file against its lab, touching no instrument",
                "labctl check configs/plating-overnight.yaml --no-dry-run")
    p.add_argument("experiment", type=Path, metavar="EXPERIMENT.yaml", help="the experiment file to check")
    p.add_argument("--no-dry-run", action="store_true", help="validate only, without the simulated dry run")
    sub.add_parser("plans", help="list the plans with their arguments, units and defaults",
                   description="list the plans with their arguments, units and defaults",
                   formatter_class=HELP, epilog="example:\n  labctl plans\n\n" + EXIT_CODES).set_defaults(func=cmd_plans)
    p = command("runs", cmd_runs, "list stored runs", "labctl runs --limit 10 --json")
    p.add_argument("--json", action="store_true", help="machine-readable output (a JSON list)")
    p.add_argument("--limit", type=positive_int, default=None, metavar="N", help="show at most the N newest runs")
    p = command("show", cmd_show, "summarise a run and write its figure", "labctl show 3f2a9c1e --out figures")
    p.add_argument("uid", help="run uid (a unique prefix of at least 5 characters is enough)")
    p.add_argument("--out", type=Path, default=None, metavar="DIR", help="folder for the PNG (default: DATA_DIR/figures)")
    p = command("report", cmd_report, "write a run's figures and an HTML summary of its fits and how it ended",
                "labctl report 3f2a9c1e")
    p.add_argument("uid", help="run uid (a unique prefix of at least 5 characters is enough)")
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="folder for the report (default: DATA_DIR/reports/UID8)")
    p = command("export", cmd_export, "write a run to CSV, NetCDF, Battery Data Format, BattINFO JSON-LD or an RO-Crate",
                "labctl export 3f2a9c1e --format netcdf --out exports")
    p.add_argument("uid", help="run uid (a unique prefix of at least 5 characters is enough)")
    p.add_argument("--format", choices=["csv", "netcdf", "bdf", "battinfo", "rocrate"], default="csv",
                   help="csv: one file per stream; netcdf: one file with every stream; bdf: the Battery Data Format "
                        "(CSV and parquet) and the spectra beside it; battinfo: the cell as JSON-LD; rocrate: the "
                        "run's whole sequence, exported and reported, as an RO-Crate (default: csv)")
    p.add_argument("--out", type=Path, default=None, metavar="DIR", help="folder for the files (default: DATA_DIR/exports)")
    command("recover", cmd_recover, "write runs the server missed (down, or a crash mid-run) in from the journal",
            "labctl recover --data-dir data")
    add_serve_command(sub)
    add_dashboard_command(command)
    from labctl.queue.cli import add_commands as add_queue_commands  # labctl queue ..., labctl submit

    add_queue_commands(sub, HELP, EXIT_CODES)
    p = command("shell", cmd_shell, "IPython with a RunEngine, the lab's devices, the plans and the catalog",
                "labctl shell configs/plating-overnight.yaml")
    p.add_argument("experiment", type=Path, nargs="?", metavar="EXPERIMENT.yaml",
                   help="experiment whose cell is put in the simulated lab (default: the default cell)")
    p.add_argument("--cell", help="id of the cell the session's runs are on (RE.md['cell']); an experiment gives it")
    p = sub.add_parser("doctor", help="reach each instrument of a lab, read it (writing nothing) and compare it "
                                      "with the lab file; exit 4 if any is unreachable",
                       formatter_class=HELP, epilog="example:\n  labctl doctor configs/lab-sim.yaml\n\n" + EXIT_CODES)
    p.add_argument("lab_file", type=Path, metavar="LAB.yaml", help="the lab file, e.g. configs/lab-sim.yaml")
    p.set_defaults(func=cmd_doctor)
    return parser


# ---- loading ------------------------------------------------------------------------------------
def load(args, need_experiment: bool = True, stored: bool = False):
    """Return (experiment or None, lab config, data dir) from the command line.

    ``stored``: the command reads stored runs, so the data directory must already hold some (a
    typo in ``--data-dir`` must not open, and create, an empty store).
    """
    from labctl.config import load_experiment, load_lab

    experiment = None
    lab_path = args.lab
    if getattr(args, "experiment", None) is not None:
        experiment = load_experiment(args.experiment)
        if lab_path is None and experiment.lab:
            lab_path = (args.experiment.parent / experiment.lab)
    lab = load_lab(lab_path or DEFAULT_LAB)
    if experiment is not None:
        experiment = load_experiment(args.experiment, lab=lab)
    data_dir = Path(args.data_dir or lab.storage.data_dir)
    if stored:
        require_data_dir(data_dir)
    return experiment, lab, data_dir


def require_data_dir(data_dir: Path) -> None:
    """Raise :class:`StorageError` (a file, or missing) or :class:`DataDirectoryMissing` (holding no
    runs) unless ``data_dir`` is a labctl data directory; create nothing."""
    from labctl.storage import check_data_dir

    check_data_dir(data_dir, write=False)
    if not any((data_dir / part).is_dir() for part in ("journal", "tiled")):
        raise DataDirectoryMissing(data_dir, "holds no labctl runs (no journal/ or tiled/ in it)")


def output_dir(out: Path) -> Path:
    """Create ``out`` (a folder for written files) and check it takes files; raise :class:`UsageError` if not."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".labctl-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise UsageError(f"--out {out}: cannot write there: {err.strerror or err}") from None
    return out


def open_storage(lab, data_dir: Path, writer: str | None = None, watched: bool = False):
    """The run's storage: live on real hardware and on a ``watched`` (paced) simulated run, else batched."""
    from labctl.storage import Storage

    return Storage.open(data_dir, lab.storage.uri, live=watched or not lab.simulated, writer=writer)


# ---- commands -----------------------------------------------------------------------------------
def cmd_check(args) -> int:
    """``labctl check``: validate an experiment file against its lab, then dry-run it."""
    experiment, lab, _ = load(args)
    print(f"{args.experiment}: valid: {len(experiment.steps)} steps for cell {experiment.cell.id} on lab {lab.name}")
    if args.no_dry_run:
        for index, step in enumerate(experiment.steps):
            print(f"  {index + 1}. {step.plan}" + (f" x{step.repeat}" if step.repeat > 1 else ""))
        return 0
    return print_dry_run(experiment, lab)


def print_dry_run(experiment, lab) -> int:
    """Run the experiment on a simulated copy of the lab (virtual clock, nothing stored); print durations."""
    from labctl.dryrun import dry_run, format_duration

    print("dry run on the simulated lab (durations on its virtual clock; a real cell may differ):")
    outcomes = dry_run(experiment, lab)
    for o in outcomes:
        repeat = f" (repeat {o.repeat + 1})" if experiment.steps[o.index].repeat > 1 else ""
        print(f"  {o.index + 1}. {o.plan + repeat:<32} {format_duration(o.duration):>9}  {o.exit_status}: {o.reason}")
    print(f"  estimated total: {format_duration(sum(o.duration for o in outcomes))}")
    return ExitCode.SUCCESS if all(o.exit_status == "success" for o in outcomes) else ExitCode.RUN_FAILED


def cmd_plans(args) -> int:
    """``labctl plans``: every plan with its arguments, units and defaults."""
    from labctl.catalog import describe_plans
    from plans import PLANS

    print(describe_plans(PLANS))
    return 0


def cmd_run(args) -> int:
    """``labctl run``: run an experiment file's steps, store every document, leave the lab safe."""
    from labctl.liveplot import display_available, live_plot_callback
    from labctl.progress import ExperimentProgress
    from labctl.runner import ExperimentRunner

    from labctl.locks import instrument_locks

    experiment, lab, data_dir = load(args)
    storage = open_storage(lab, data_dir, writer=experiment.name, watched=args.pace is not None)
    try:
        locks = instrument_locks(lab, experiment.name)
    except BaseException:
        storage.close(timeout=1)
        raise
    for lock in [storage.lock, *locks]:
        if lock.took_over:
            print(lock.took_over, file=sys.stderr)
    runner = None
    ending = threading.Event()  # a signal asked for the end: the process goes within EXIT_DEADLINE
    # Outside a plan (at the pause prompt, between steps) SIGTERM and SIGHUP end the run as Ctrl-C
    # does, with their own reason; while a plan runs, the RunEngine's handler aborts it with the
    # cell at open circuit.
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _signal_ending(ending))
    watchdog = threading.Thread(target=_exit_after_deadline, args=(ending,), daemon=True)
    watchdog.start()
    outcomes = []
    try:
        runner = ExperimentRunner(experiment, lab, storage, pace=args.pace, seed=args.seed)
        threading.Thread(target=lambda: runner.RE.abort_requested.wait() and ending.set(), daemon=True).start()
        if display_available() if args.plot is None else args.plot:
            runner.RE.subscribe(live_plot_callback())  # on the main thread, before the plan runs
        if args.bec:
            subscribe_standard_callbacks(runner.RE, plots=display_available())
        with ExperimentProgress(runner) as progress:
            outcomes = runner.run(on_step=progress.step_started, on_pause=ask_resume_or_abort)
        delivered = storage.flush()
    finally:
        if runner is not None:
            runner.lab.close()
        storage.close()
        for lock in locks:
            lock.release()
    pending = storage.pending()
    stored = sum(outcome.uid not in pending for outcome in outcomes)
    lines = [f"\nsequence {runner.sequence_id}: {stored} of {len(outcomes)} runs stored in {data_dir.resolve()}"
             + (f", {len(outcomes) - stored} pending upload" if stored < len(outcomes) else "")]
    lines += [f"  {o.uid}  {o.plan:<16} {o.exit_status:<8} {o.reason}" for o in outcomes]
    if runner.interrupted:
        lines.append(f"  experiment ended between steps: {runner.interrupted}")
    lines.append("lab left safe: " + "; ".join(str(action) for action in runner.safe_actions))
    if not delivered:
        lines.append(f"  some runs are only in the journal ({storage.journal_dir}); `labctl recover` writes them in")
    print_outcome("\n".join(lines))
    succeeded = not runner.interrupted and all(o.exit_status == "success" for o in outcomes)
    return ExitCode.SUCCESS if succeeded else ExitCode.RUN_FAILED


def subscribe_standard_callbacks(RE, plots: bool) -> None:
    """bluesky's BestEffortCallback (the ``primary`` voltage) and a LiveTable of the ``impedance_fit`` stream."""
    from bluesky.callbacks import LiveTable
    from bluesky.callbacks.best_effort import BestEffortCallback

    from plans.stubs import FIT_HINTS

    bec = BestEffortCallback()
    if not plots:
        bec.disable_plots()
    RE.subscribe(bec)
    RE.subscribe(LiveTable([f"impedance_fit_{name}" for name in FIT_HINTS[:2]], stream_name="impedance_fit"))


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def print_outcome(text: str) -> None:
    """Print how a run ended on stdout; if stdout's reader has gone (tee killed by Ctrl-C), on stderr too."""
    print(text, flush=True)
    if getattr(sys.stdout, "closed_pipe", False):
        print(text, file=sys.stderr, flush=True)


class Ending(KeyboardInterrupt):
    """SIGTERM or SIGHUP outside a plan, raised as Ctrl-C is, with the reason the run closes with."""


def _signal_ending(ending: threading.Event):
    from labctl.session import ABORT_SIGNALS

    def handler(signum, frame):
        ending.set()
        raise Ending(ABORT_SIGNALS[signum])

    return handler


def _exit_after_deadline(ending: threading.Event) -> None:
    """Once a signal asked for the end, give the cleanup EXIT_DEADLINE seconds, then end the process.

    The cleanup (the plan's finalizer, the stop document, Lab.make_safe, storage) normally takes
    a second or two; this bounds it should an instrument or the server hang. The potentiostat's
    own technique end and safety limits stop the cell without this process.
    """
    ending.wait()
    if not threading.Event().wait(EXIT_DEADLINE):  # nothing sets it: a bounded wait, then the end
        fail(f"cleanup still running {EXIT_DEADLINE:g} s after the signal: exiting now "
             f"(`labctl recover` closes the run from the journal)", ExitCode.RUN_FAILED)
        os._exit(ExitCode.RUN_FAILED)


def ask_resume_or_abort() -> str:
    """While paused: Enter resumes, Ctrl-C aborts; return ``"resume"``, ``"abort"`` or a signal's abort reason.

    Without a terminal (nohup, a service) nobody can press Enter: it waits for a second SIGINT
    (or SIGTERM, SIGHUP).
    """
    from labctl.session import say

    answered = threading.Event()

    def read_answer():
        try:
            if sys.stdin is not None and sys.stdin.readline():  # "" is end of input: no one will answer
                answered.set()
        except (OSError, ValueError):
            pass

    try:
        say("\nPaused: the cell is at open circuit, the chamber and the rig hold their setpoints.\n"
            "Press Enter to resume, Ctrl-C to abort.")
        threading.Thread(target=read_answer, daemon=True).start()
        while not answered.wait(0.2):  # short waits, so that SIGINT is handled at once
            pass
    except Ending as ending:
        say(f"{ending}: the cell stays at open circuit")
        return str(ending)
    except KeyboardInterrupt:
        say("aborting: the cell stays at open circuit")
        return "abort"
    say("resuming")
    return "resume"


def cmd_runs(args) -> int:
    """``labctl runs``: list the stored runs (from the catalog file when local: no server started)."""
    from labctl.storage.catalogfile import catalog_file_runs, pending_runs

    _, lab, data_dir = load(args, stored=True)
    found = None if lab.storage.uri else catalog_file_runs(data_dir, args.limit)
    if found is not None:  # read straight from the local catalog: no server to start
        runs, pending = found, pending_runs(data_dir)
    else:
        storage = open_storage(lab, data_dir)
        try:
            runs = storage.runs(limit=args.limit)
            pending = storage.pending()
        finally:
            storage.close()
    if args.json:
        print(json.dumps([{**run, "pending_upload": pending.get(run["uid"])} for run in runs], indent=1, default=str))
        return 0
    print(f"{'uid':<10} {'plan':<16} {'cell':<16} {'start':<20} {'exit':<8} reason")
    for run in runs:
        print(
            f"{run['uid'][:8]:<10} {run['plan_name'] or '':<16} {run['cell_id'] or '':<16} "
            f"{(run['start'] or '')[:19]:<20} {run['exit_status'] or 'open':<8} {run['reason'] or ''}"
        )
    if pending:
        print("\npending upload (in the journal, not or not completely in the server; `labctl recover` writes them in):")
        for uid, reason in pending.items():
            print(f"  {uid}  {reason}")
    return 0


@contextlib.contextmanager
def stored_run(args):
    """Yield (the run ``args.uid``, the data dir) with the storage open; close it afterwards."""
    from labctl.storage import disk_error

    _, lab, data_dir = load(args, stored=True)
    storage = open_storage(lab, data_dir)
    try:
        yield find_run(storage, args.uid, data_dir), data_dir
    except OSError as error:  # a figure, report or export that cannot be written: say where and why
        raise disk_error(error, f"{args.command}: writing") from error
    finally:
        storage.close()


def find_run(storage, uid: str, data_dir: Path):
    """The stored run ``uid`` (a unique prefix of at least 5 characters); :class:`UsageError` if there is none."""
    if len(uid) < 5:
        raise UsageError(f"run uid {uid!r}: give at least 5 characters of it (`labctl runs --data-dir {data_dir}` lists them)")
    from labctl.core.errors import StorageError

    try:
        return storage.find(uid)
    except (KeyError, StorageError):  # not in the catalog
        raise UsageError(f"no run {uid!r} in {data_dir} (`labctl runs --data-dir {data_dir}` lists them)") from None


def cmd_show(args) -> int:
    """``labctl show``: summarise one run and write its figure."""
    from labctl.plots import run_figure, run_summary

    with stored_run(args) as (run, data_dir):
        print(run_summary(run))
        for stream, files in run.missing.items():
            print(f"  stream    {stream}: not shown, its file is missing: {', '.join(files)}")
        path = run_figure(run, output_dir(args.out or data_dir / "figures"))
    print(f"figure: {path}")
    return 0


def cmd_report(args) -> int:
    """``labctl report``: one run's figures and an HTML summary."""
    from labctl.report import write_report

    with stored_run(args) as (run, data_dir):
        path = write_report(run, output_dir(args.out or data_dir / "reports" / run.start["uid"][:8]))
    print(f"report: {path}")
    return 0


def cmd_export(args) -> int:
    """``labctl export``: one run (or its sequence) in a file format."""
    from labctl.export import export

    with stored_run(args) as (run, data_dir):
        paths = export(run, args.format, output_dir(args.out or data_dir / "exports"))
    for path in paths:
        print(f"wrote {path}")
    return 0


def cmd_recover(args) -> int:
    """``labctl recover``: write runs the server missed in from the journal."""
    _, lab, data_dir = load(args, stored=True)
    storage = open_storage(lab, data_dir)
    try:
        outcomes = storage.recover()
        holder, live = storage._live_writer()
    finally:
        storage.close()
    for uid, outcome in outcomes.items():
        print(f"  {uid}  {outcome.message}")
    lost = sum(outcome.points_lost for outcome in outcomes.values())
    written = sum(outcome.delivered for outcome in outcomes.values())
    print(f"{written} of {len(outcomes)} runs written in from the journal ({storage.journal_dir}); "
          f"points of journalled pages lost: {lost}")
    if live:
        from labctl.locks import describe_holder

        print(f"left alone: {len(live)} run(s) of the live {describe_holder(holder)}, which delivers them itself")
    return 0 if written == len(outcomes) else 1


def cmd_doctor(args) -> int:
    """``labctl doctor``: reach and read every instrument of a lab, writing nothing."""
    from labctl.config import load_lab
    from labctl.doctor import doctor

    return doctor(load_lab(args.lab_file))


def add_serve_command(sub) -> None:
    """Add ``labctl serve`` to the command line."""
    what = ("serve a data directory to other tools with tiled (labctl runs write through it), or, with --postgres, "
            "the lab's data server (PostgreSQL, an API key per rig)")
    p = sub.add_parser("serve", help=what, description=what, formatter_class=HELP,
                       epilog="examples:\n  labctl serve data --port 8000 --api-key \"$(openssl rand -hex 32)\"\n"
                              "  labctl serve --postgres labctl@db-host:5432 --storage /srv/labctl --add-key rig-1\n"
                              "  labctl serve --postgres labctl@db-host:5432 --storage /srv/labctl --host 0.0.0.0\n\n"
                              + EXIT_CODES)
    p.set_defaults(func=cmd_serve)
    p.add_argument("data_dir", type=Path, nargs="?", metavar="DATA_DIR",
                   help="the data directory (journal/, assets/, tiled/); not with --postgres")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    p.add_argument("--port", type=int, default=8000, help="TCP port to listen on (default: 8000)")
    p.add_argument("--api-key", default=None, help="the single-user API key (default: $TILED_API_KEY, else random)")
    lab = p.add_argument_group("the lab's data server (configs/dataserver.yml: PostgreSQL, an API key per rig)")
    lab.add_argument("--postgres", metavar="USER@HOST:PORT",
                     help="serve the lab's data server from this PostgreSQL cluster (password in $PGPASSWORD)")
    lab.add_argument("--storage", type=Path, metavar="DIR", help="the server's directory: arrays and log (with --postgres)")
    lab.add_argument("--config", type=Path, default=None, help="the tiled configuration (default: configs/dataserver.yml)")
    lab.add_argument("--add-key", metavar="NAME", help="mint the API key of a rig (or of viewers), print it and exit")
    lab.add_argument("--read-only", action="store_true", help="with --add-key: a key that can only read")
    lab.add_argument("--list-keys", action="store_true", help="list the keys (name, first 8 characters) and exit")
    lab.add_argument("--revoke-key", metavar="NAME", help="delete the keys of NAME and exit")


def cmd_serve(args) -> int:
    """Serve DATA_DIR until Ctrl-C: one tiled server, with the options labctl's embedded one uses."""
    import os
    import secrets

    from labctl.dataserver import DataServer
    from labctl.locks import server_lock
    from labctl.storage import check_data_dir

    if args.postgres or args.storage:
        return cmd_serve_lab(args)
    if args.data_dir is None or args.add_key or args.list_keys or args.revoke_key:
        raise UsageError("labctl serve: give a DATA_DIR, or --postgres USER@HOST:PORT --storage DIR (the lab's server, "
                         "where --add-key, --list-keys and --revoke-key apply)")
    data_dir = args.data_dir.expanduser().resolve()
    can_write = check_data_dir(data_dir, write=False)
    api_key = args.api_key or os.environ.get("TILED_API_KEY") or secrets.token_hex(16)
    lock = server_lock(data_dir)
    if can_write:  # labctl runs on this data directory find the server here and write through it
        lock.acquire("labctl serve", None, uri=f"http://127.0.0.1:{args.port}/api/v1?api_key={api_key}")
    server = None
    try:
        server = DataServer(data_dir, api_key=api_key, host=args.host, port=args.port, read_only=not can_write)
        signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
        print(f"serving {data_dir}{' (read-only)' if server.read_only else ''} at "
              f"http://{args.host}:{server.port}/api/v1 (API key {api_key}); Ctrl-C stops", flush=True)
        print(f"  from tiled.client import from_uri; runs = from_uri('http://{args.host}:{server.port}', "
              f"api_key='{api_key}')['runs']", flush=True)
        try:
            server.wait()
        except KeyboardInterrupt:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once is enough: let the cleanup finish
            signal.signal(signal.SIGINT, signal.SIG_IGN)
    finally:
        if server is not None:
            server.close()
        lock.release()
    return 0


def cmd_serve_lab(args) -> int:
    """``labctl serve --postgres``: the lab's data server until Ctrl-C, or manage its API keys."""
    from labctl.dataserver import LAB_CONFIG, LabServer

    if not args.postgres or args.data_dir is not None:
        raise UsageError("labctl serve: the lab's server takes --postgres USER@HOST:PORT (and --storage DIR), no DATA_DIR")
    if args.read_only and not args.add_key:
        raise UsageError("--read-only: applies to --add-key NAME")
    config = args.config or LAB_CONFIG
    if not config.is_file():
        raise UsageError(f"--config {config}: no such file")
    server = LabServer(args.postgres, (args.storage or Path.cwd()).expanduser(), host=args.host, port=args.port,
                       config=config)
    if args.add_key:
        key = server.add_key(args.add_key, read_only=args.read_only)
        print(f"API key of {args.add_key}{' (read-only)' if args.read_only else ''}, shown once: {key}\n"
              f"  its lab file: storage.uri: {server.uri(key)}")
        return 0
    if args.list_keys:
        for key in server.keys():
            print(f"{key['name']:<20} {key['first_eight']}...  {'read-only' if key['read_only'] else 'read-write'}  "
                  f"last used {key['latest_activity'] or 'never'}")
        return 0
    if args.revoke_key:
        count = server.revoke_key(args.revoke_key)
        print(f"revoked {count} key(s) of {args.revoke_key}")
        return 0 if count else ExitCode.USAGE
    if args.storage is None:
        raise UsageError("labctl serve --postgres: give --storage DIR, the server's directory (arrays, log)")
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        server.start()
        print(f"the lab's data server at {server.uri('KEY').partition('?')[0]} (catalog in PostgreSQL "
              f"{args.postgres.rpartition('@')[2]}, arrays in {server.directory / 'data'}, log {server.log}); "
              f"every request needs a key (--add-key RIG); Ctrl-C stops", flush=True)
        server.wait()
    except KeyboardInterrupt:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once is enough: let the cleanup finish
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    finally:
        server.close()
    return 0


def add_dashboard_command(command) -> None:
    """Add ``labctl dashboard`` to the command line."""
    p = command("dashboard", cmd_dashboard, "serve a live web page of the lab and its runs (read-only without an API key)",
                "labctl dashboard --data-dir data --queue rig-1=tcp://127.0.0.1:60615 --api-key-file key.txt")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    p.add_argument("--port", type=positive_int, default=8050, help="TCP port to listen on (default: 8050)")
    p.add_argument("--queue", action="append", default=[], metavar="RIG=ADDRESS",
                   help="a rig's queue (RE Manager control address), repeatable; shown and controllable")
    p.add_argument("--api-key-file", type=Path, metavar="FILE",
                   help="file whose first line is the key that unlocks queue control (default: read-only)")
    p.add_argument("--poll", type=positive_float, default=2.0, metavar="S",
                   help="how often the page is told about new data, seconds (default: 2)")


def cmd_dashboard(args) -> int:
    """Serve the dashboard until Ctrl-C."""
    from labctl.dashboard import Dashboard, bind, connect_queues, serve

    queues = {}
    for item in args.queue:
        rig, _, address = item.partition("=")
        if not rig or not address:
            raise UsageError(f"--queue {item!r}: expected RIG=ADDRESS, e.g. rig-1=tcp://127.0.0.1:60615")
        queues[rig] = address
    api_key = read_api_key(args.api_key_file) if args.api_key_file else None
    _, lab, data_dir = load(args, stored=True)
    storage = open_storage(lab, data_dir)
    try:
        dashboard = Dashboard(storage.catalog, connect_queues(queues) if queues else {}, api_key, args.poll)
        try:
            sock = bind(args.host, args.port)
        except OSError as error:
            raise UsageError(f"--port {args.port}: cannot listen on {args.host}:{args.port} ({error.strerror})") from None
        print(f"dashboard of {data_dir} at http://{args.host}:{sock.getsockname()[1]}/"
              f"{' (queue control with the API key)' if api_key else ' (read-only)'}; Ctrl-C stops", flush=True)
        serve(dashboard, sock)
    finally:
        storage.close()
    return ExitCode.SUCCESS


def read_api_key(path: Path) -> str:
    """The first line of ``path``; a one-line error if it cannot be read or is empty."""
    try:
        lines = path.read_text().strip().splitlines()
    except OSError as error:
        raise UsageError(f"--api-key-file {path}: cannot be read ({error.strerror})") from None
    key = lines[0].strip() if lines else ""
    if not key:
        raise UsageError(f"--api-key-file {path}: is empty; write the key on its first line")
    return key


def cmd_shell(args) -> int:
    """``labctl shell``: IPython with the lab, a RunEngine and the catalog."""
    from labctl.shell import interact, namespace

    experiment, lab, data_dir = load(args)
    ns = namespace(lab, data_dir, experiment, cell=args.cell)
    print(ns["__doc__"])
    # With a live figure, IPython runs Qt's loop between plans too, so the window stays responsive.
    for action in interact(ns, ["--matplotlib=qt"] if "live_plot" in ns else []):
        print(f"  {action}")
    return ExitCode.SUCCESS


if __name__ == "__main__":
    sys.exit(main())
