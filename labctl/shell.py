"""What ``labctl shell`` puts in IPython: a RunEngine on the lab's clock, the devices, the plans, the catalog.

The same in two lines from any Python prompt::

    from labctl.shell import open_session
    ns = open_session("configs/lab-sim.yaml"); globals().update(ns)

and ``close_session(ns)`` when done: it ends a paused plan, makes the lab safe and closes storage
(``labctl shell`` does it on ``exit``).
"""

from __future__ import annotations

from pathlib import Path

import bluesky.plan_stubs as bps

import plans
from labctl.lab import build_lab, cell_parameters
from labctl.liveplot import display_available, live_plot_callback
from labctl.session import make_run_engine, signals_held
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


def namespace(lab_config, data_dir: Path, experiment=None, cell: str | dict | None = None) -> dict:
    """Return the interactive namespace for a lab (and optionally an experiment's cell, or a cell id)."""
    from devices.sim.cell import CellParameters

    storage = Storage.open(data_dir, lab_config.storage.uri, live=not lab_config.simulated, writer="labctl shell")
    params = cell_parameters(experiment.cell) if experiment is not None else CellParameters()
    lab = build_lab(lab_config, params, Path(storage.assets_dir))
    RE = make_run_engine(lab.clock)
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


def close_session(ns: dict) -> list:
    """End a session: abort a plan left paused, make the lab safe, close the lab and storage.

    ``ns`` is what :func:`namespace` returned (a copy, since IPython may clear its own on exit).
    Returns what :meth:`labctl.lab.Lab.make_safe` did. Each part runs whatever the others do.
    """
    RE, lab, storage = ns["RE"], ns["lab"], ns["storage"]
    actions = []
    with signals_held():
        try:
            if not RE.state.is_idle:  # paused at the prompt (Ctrl-C, then exit): close the run, cell at open circuit
                RE.abort(reason=SHELL_LEFT_WHILE_PAUSED)
        finally:
            try:
                actions = lab.make_safe()
            finally:
                try:
                    lab.close()
                finally:
                    storage.close()
    return actions
