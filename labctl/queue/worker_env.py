"""What the RE Worker of one lab holds: the lab, a RunEngine on its clock, storage, the queue's plans."""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger(__name__)


@dataclass
class WorkerEnvironment:
    """What the queue's worker namespace holds: the lab, its RunEngine, storage and plans."""
    RE: Any
    lab: Any
    storage: Any
    devices: dict[str, Any]
    plans: dict[str, Callable]
    alerter: Any = None

    def cell_state(self) -> dict:
        """Return whether the potentiostat drives the cell (``circuit: closed``) or not (``open``), and the RE state."""
        pot = self.lab.potentiostat
        running = pot is not None and pot.backend.running
        return {"circuit": "closed" if running else "open", "paused": bool(getattr(pot, "_paused", False)),
                "re_state": str(self.RE.state)}

    def close(self) -> None:
        """Deliver stored runs and queued alerts, close the simulators and storage; each whatever the others do."""
        try:
            self.lab.close()
        finally:
            try:
                self.storage.close(timeout=30)
            finally:
                if self.alerter is not None:
                    self.alerter.close()


def build(lab_path: Path, data_dir: Path, pace: float | None) -> WorkerEnvironment:
    """Build the lab of ``lab_path`` (default cell), a RunEngine on its clock subscribed to storage, and the plans."""
    from labctl.config import load_lab
    from labctl.lab import build_lab, cell_parameters
    from labctl.queue.adapter import queue_plans
    from labctl.queue.sequences import FAILED_FILE, Sequences
    from labctl.session import _virtual_sleep
    from labctl.storage import Storage

    config = load_lab(lab_path)
    storage = Storage.open(data_dir, config.storage.uri, live=not config.simulated, writer=f"queue {config.name}")
    try:
        lab = build_lab(config, cell_parameters(), Path(storage.assets_dir))
        # No Ctrl-C policy here: the queue pauses and stops the plan; results stay out of the
        # queue's history (a RunEngineResult is not JSON).
        RE = queue_run_engine(clock=lab.clock)
        if getattr(lab.clock, "is_virtual", False):
            RE.register_command("sleep", _virtual_sleep(lab.clock, pace))
        RE.md.update({"lab": config.name, "simulated": bool(config.simulated),
                      "sim_seed": lab.seed if config.simulated else None})
        RE.subscribe(storage.callback)
        alerter = None
        if config.alerts is not None:  # a short, a guard's decisions, each run's end (labctl.alerts)
            from labctl.alerts import AlertCallback, Alerter

            alerter = Alerter(config.alerts, config.name)
            RE.subscribe(AlertCallback(alerter))
    except BaseException:
        storage.close(timeout=5)
        raise
    devices = {role: device for role, device in lab.devices().items() if device is not None}
    sequences = Sequences(Path(data_dir) / "queue" / FAILED_FILE)

    def step(start):  # one item: skipped if its file failed before; an instrument fault alerts
        if alerter is not None:
            from labctl.alerts import alert_faults

            start = functools.partial(alert_faults, alerter, start, lambda: RE.item_meta)
        return sequences.run(RE, start)

    plans = queue_plans(config, lab, steps=step)
    return WorkerEnvironment(RE, lab, storage, devices, plans, alerter)


def queue_run_engine(clock):
    """A :class:`labctl.session.LabRunEngine` that keeps the metadata of the item it runs in ``item_meta``.

    queueserver runs an item as ``RE(plan, **item["meta"])``; the plans' wrapper reads it there
    to know the item's sequence (:mod:`labctl.queue.sequences`).
    """
    from labctl.session import LabRunEngine

    class QueueRunEngine(LabRunEngine):
        item_meta: dict = {}

        def __call__(self, *args, **metadata_kw):
            self.item_meta = dict(metadata_kw)
            return super().__call__(*args, **metadata_kw)

    return QueueRunEngine({}, clock=clock, context_managers=[])
