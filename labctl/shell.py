"""What ``labctl shell`` puts in IPython: a RunEngine on the lab's clock, the devices, the plans, the catalog.

The same in two lines from any Python prompt::

    from labctl.shell import open_session
    ns = open_session("configs/lab-sim.yaml"); globals().update(ns)

and ``close_session(ns)`` when done: it ends a paused plan, makes the lab safe and closes storage
(``labctl shell`` does it on ``exit``, and on SIGTERM or SIGHUP, see :func:`interact`).

Every plan run and every chamber or rig setpoint set through the session's ``RE`` passes the rule
set experiment files pass (:mod:`labctl.safety`), against the lab file and the session's cell
(:func:`session_cell`); a refused call raises :class:`labctl.safety.UnsafePlanCall` before the
instrument is touched, and ``labctl shell`` prints it as one ``error:`` line.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import bluesky.plan_stubs as bps
from bluesky.preprocessors import plan_mutator

import plans
from labctl import safety
from labctl.core.errors import ExitCode, LabctlError
from labctl.lab import build_lab, cell_parameters
from labctl.liveplot import display_available, live_plot_callback
from labctl.session import ABORT_SIGNALS, make_run_engine, say, signals_held
from labctl.storage import Storage

BANNER = """labctl session
  RE                      RunEngine (sleep follows the lab's clock)
  potentiostat, chamber, rig   the lab's devices
  plans, bps              labctl plans and bluesky plan stubs
  catalog                 stored runs: catalog[uid]['potentiostat'].read()
  RE.md                   metadata of every run started here (lab; cell, if given)
  lab.simulators          the simulated cell, chamber and rig (simulated labs)
e.g. RE(plans.set_temperature(chamber, temperature=303.15))
     RE(plans.plate(potentiostat, chamber, rig, current_density=5.0, electrode_area=3.14e-6, max_duration=3600))"""


def session_metadata(lab_config, experiment=None, cell: str | dict | None = None) -> dict:
    """What every run started in the session carries (``RE.md``): the lab, and the cell if known.

    The cell comes from an experiment file (its full metadata, as YAML runs have it) or is given
    as an id or a dict with at least ``id``; runs are then found by it like YAML runs
    (``storage.search_cell(id)``, ``labctl runs``).
    """
    md = {"lab": lab_config.name, "simulated": bool(lab_config.simulated),
          "sim_seed": lab_config.seed if lab_config.simulated else None}
    if experiment is not None:
        md.update(cell=experiment.to_metadata(), experiment=experiment.name)
    elif isinstance(cell, str):
        md["cell"] = {"id": cell}
    elif cell is not None:
        if not cell.get("id"):
            raise ValueError(f"cell metadata needs an id, got {cell!r}")
        md["cell"] = dict(cell)
    return md


def session_cell(experiment=None, cell: str | dict | None = None):
    """Return the cell the rule set checks the session's calls against (a ``labctl.config.Cell``).

    The experiment file's cell; else the cell given (an id, or a dict of ``Cell`` fields), with
    what it leaves out taken from the simulated default cell: symmetric, so lithium electrodes.
    A cell labctl knows nothing about is taken to hold lithium, so 180.5 degC stays refused.
    """
    from pydantic import ValidationError

    from labctl.config import Cell
    from labctl.core.errors import UsageError

    if experiment is not None:
        return experiment.cell
    given = {"id": cell} if isinstance(cell, str) else dict(cell or {"id": "unknown"})
    default = cell_parameters()
    if "electrode_diameter" not in given and "electrode_area" not in given:
        given["electrode_area"] = f"{default.electrode_area * 1e4!r} cm^2"  # as a file would write it
    try:
        return Cell.model_validate({"kind": default.kind, "thickness": f"{default.thickness * 1e3!r} mm", **given})
    except ValidationError as err:  # one line per field, as a cell in a file would be refused
        raise UsageError("; ".join(f"cell {'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())) from None


# A chamber or rig set by hand is checked as the plan that sets it would be.
SET_AS_PLAN = {"chamber": ("set_temperature", "temperature"), "rig": ("set_pressure", "pressure")}


def refusing_unsafe_calls(lab, cell):
    """Return a RunEngine preprocessor that refuses what the rule set refuses, before it reaches an instrument.

    A plan is checked when it opens its run, from its start document's ``plan_name`` and SI
    ``plan_args`` (with its ``electrode_area`` as the cell's, as the shell's calls give it); a
    ``set`` of the chamber or the rig (``bps.mv(chamber, 463.15)``) as ``set_temperature`` or
    ``set_pressure`` would be. A refusal is thrown into the plan, so its own cleanup runs, and the
    RunEngine raises it.
    """
    roles = {id(device): role for role, device in lab.devices().items() if role in SET_AS_PLAN}

    def check(msg):
        if msg.command == "open_run" and msg.kwargs.get("plan_name") in plans.PLANS:
            name, arguments = msg.kwargs["plan_name"], dict(msg.kwargs.get("plan_args") or {})
            label = name
        elif msg.command == "set" and id(msg.obj) in roles and msg.args:
            name, argument = SET_AS_PLAN[roles[id(msg.obj)]]
            arguments, label = {argument: msg.args[0]}, f"{roles[id(msg.obj)]}.set"
        else:
            return None, None
        area = arguments.get("electrode_area")
        checked = cell.model_copy(update={"electrode_area": area, "electrode_diameter": None}) if area else cell
        problems = safety.call_problems(name, arguments, lab.config, checked)
        return (_raising(safety.UnsafePlanCall(label, problems)), None) if problems else (None, None)

    return lambda plan: plan_mutator(plan, check)


def _raising(error: Exception):
    """A plan that raises ``error`` at once: plan_mutator throws it into the plan whose message it replaces."""
    raise error
    yield  # unreachable: it makes this function a generator, as plan_mutator needs


def namespace(lab_config, data_dir: Path, experiment=None, cell: str | dict | None = None) -> dict:
    """Return the interactive namespace for a lab (and optionally an experiment's cell, or a cell id)."""
    checked_cell = session_cell(experiment, cell)  # before anything opens: a bad cell dict is refused here
    storage = Storage.open(data_dir, lab_config.storage.uri, live=not lab_config.simulated, writer="labctl shell")
    params = cell_parameters(experiment.cell if experiment is not None else None)
    lab = build_lab(lab_config, params, Path(storage.assets_dir))
    if lab.chamber is not None:  # the chamber's melting-point interlock follows the cell, as in a run
        lab.chamber.contains_lithium.put(checked_cell.contains_lithium)
    RE = make_run_engine(lab.clock)
    RE.preprocessors.append(refusing_unsafe_calls(lab, checked_cell))
    RE.md.update(session_metadata(lab_config, experiment, cell))
    RE.subscribe(storage.callback)
    shown = {}
    if display_available():
        shown["live_plot"] = live_plot_callback()
        RE.subscribe(shown["live_plot"])
    return {
        "__doc__": BANNER + ("\n  live_plot               the live figure (voltage, spectrum, fitted resistances)" if shown else ""),
        **shown,
        "RE": RE,
        "lab": lab,
        **lab.devices(),
        "plans": plans,
        "bps": bps,
        "storage": storage,
        "catalog": storage.catalog,
    }


def open_session(lab_path: str | Path = "configs/lab-sim.yaml", data_dir: str | Path | None = None,
                 cell: str | dict | None = None, experiment: str | Path | None = None) -> dict:
    """Load a lab file and return :func:`namespace` for it (the two-line recipe above).

    ``cell`` (an id or a metadata dict) or ``experiment`` (a file whose cell is put in the
    simulated lab and in ``RE.md``) says which cell the session's runs are on.
    """
    from labctl.config import load_experiment, load_lab

    lab_config = load_lab(Path(lab_path))
    loaded = load_experiment(Path(experiment), lab=lab_config) if experiment is not None else None
    return namespace(lab_config, Path(data_dir or lab_config.storage.data_dir), loaded, cell)

SHELL_LEFT_WHILE_PAUSED = "aborted: the shell was left with the plan paused"


def close_session(ns: dict, reason: str = SHELL_LEFT_WHILE_PAUSED) -> list:
    """End a session: abort a plan left paused, make the lab safe, close the lab and storage.

    ``ns`` is what :func:`namespace` returned (a copy, since IPython may clear its own on exit).
    ``reason`` is the stop reason of a run left paused. Returns what
    :meth:`labctl.lab.Lab.make_safe` did. Each part runs whatever the others do.
    """
    RE, lab, storage = ns["RE"], ns["lab"], ns["storage"]
    actions = []
    with signals_held():
        try:
            if not RE.state.is_idle:  # paused at the prompt (Ctrl-C, then exit): close the run, cell at open circuit
                RE.abort(reason=reason)
        finally:
            try:
                actions = lab.make_safe()
            finally:
                try:
                    lab.close()
                finally:
                    storage.close()
    return actions


def interact(ns: dict, argv: list[str]) -> list:
    """Run IPython on ``ns`` until ``exit``; then :func:`close_session`. Return what make_safe did.

    labctl errors (a refused call) print as one ``error:`` line, not a traceback. SIGTERM and
    SIGHUP make the lab safe the same way and end the process with exit code 1: at the prompt (or
    in any cell outside a plan) at once, a run left paused closed with the signal's reason; during
    a plan the RunEngine first aborts it (``labctl.session.PauseOnInterrupt``), and the shell then
    leaves as the cell ends. Should the cleanup hang, the process goes after ``EXIT_DEADLINE``.
    """
    from IPython.terminal.ipapp import TerminalIPythonApp  # what IPython.start_ipython runs, in three steps

    session = dict(ns)  # IPython may clear its user namespace on exit: keep what must be closed
    app = TerminalIPythonApp.instance(user_ns=ns)
    app.initialize(argv)
    app.shell.set_custom_exc((LabctlError,), _one_line)
    leave = Leaving(session)
    app.shell.events.register("post_run_cell", lambda result: leave.after_abort())
    previous = {signum: signal.signal(signum, leave.on_signal) for signum in ABORT_SIGNALS}
    try:
        app.start()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return close_session(session)


def _one_line(shell, etype, value, tb, tb_offset=None):
    say(f"error: {value}")


class Leaving:
    """Leaves ``labctl shell`` on SIGTERM or SIGHUP: the session closed, the lab safe, the process gone."""

    def __init__(self, session: dict):
        self.session = session
        self.started = False

    def on_signal(self, signum, frame):
        """The handler of SIGTERM and SIGHUP outside a plan (the RunEngine has its own during one)."""
        self.leave(ABORT_SIGNALS[signum])

    def after_abort(self):
        """After each cell: if SIGTERM or SIGHUP aborted a plan in it, leave now."""
        RE = self.session["RE"]
        if RE.abort_requested.is_set() and RE.abort_reason in ABORT_SIGNALS.values():
            self.leave(RE.abort_reason)

    def leave(self, reason: str):
        if self.started:  # a second signal while leaving: the first one's cleanup goes on
            return
        self.started = True
        from labctl.cli import EXIT_DEADLINE

        say(f"{reason}: leaving labctl shell, making the lab safe")
        threading.Timer(EXIT_DEADLINE, _exit_now, args=(EXIT_DEADLINE,)).start()
        try:
            for action in close_session(self.session, reason=reason):
                say(f"  {action}")
        finally:
            os._exit(ExitCode.RUN_FAILED)  # not SystemExit: IPython would catch it and stay at its prompt


def _exit_now(deadline: float) -> None:
    say(f"cleanup still running {deadline:g} s after the signal: exiting now "
        f"(`labctl recover` closes the run from the journal)")
    os._exit(ExitCode.RUN_FAILED)
