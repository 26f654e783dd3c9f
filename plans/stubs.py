"""Plan stubs shared by the experiment plans: waiting on the session clock, recording the environment."""

from __future__ import annotations

from typing import Any, Iterable

import bluesky.plan_stubs as bps
import numpy as np
from bluesky.utils import Msg

from labctl.errors import LabctlError

ENVIRONMENT = "environment"


class NotAtOpenCircuit(LabctlError):
    """A plan failed, and then its cleanup could not open the circuit: the cell may still carry current.

    Parameters
    ----------
    failure : Exception
        What ended the plan.
    error : Exception
        Why the circuit could not be opened (it names the potentiostat and what still stops it).
    """

    def __init__(self, failure: Exception, error: Exception):
        self.failure, self.error = failure, error
        super().__init__(f"{str(failure) or type(failure).__name__}; then {error}")


def wait_recording(status, readables: Iterable[Any], interval: float, group: str):
    """Wait for ``status``, reading ``readables`` into the environment stream every ``interval`` s.

    Time passes through ``bps.sleep``, so on the virtual clock the wait takes no wall time and on
    the wall clock the RunEngine stays responsive to pause and stop between readings.
    """
    readables = list(readables)
    while not status.done:
        yield from bps.sleep(interval)
        if readables:
            yield from bps.trigger_and_read(readables, name=ENVIRONMENT)
    yield from bps.wait(group=group)


def wait_for(status, group: str, expected: float = 0.0, poll: float = 1.0):
    """Wait for ``status``: sleep the ``expected`` duration at once, then in ``poll`` steps.

    One sleep for the expected part keeps a long wait to a few messages (each plan stub costs
    bluesky a stack capture); polling covers an instrument slower than expected. Time passes
    through ``bps.sleep`` as in :func:`wait_recording`.
    """
    if expected > 0 and not status.done:
        yield from bps.sleep(expected)
    yield from wait_recording(status, [], poll, group)


def open_circuit(potentiostat):
    """Put the cell at open circuit: the RunEngine calls the channel's ``stop()``, which raises if it cannot."""
    yield Msg("stop", potentiostat)


class ComputedValues:
    """Values a plan computes during a run (fits, derived figures), read into a stream like a detector.

    bluesky reads it with ``bps.read``: :meth:`update` sets the values and their time first. The
    keys must stay the same from one reading to the next (they make the stream's descriptor).
    """

    parent = None

    def __init__(self, name: str, source: str) -> None:
        self.name, self.source = name, source
        self.values: dict[str, float] = {}
        self.timestamp = 0.0

    def update(self, values: dict[str, float], timestamp: float) -> None:
        self.values, self.timestamp = dict(values), timestamp

    def read(self) -> dict[str, dict]:
        return {f"{self.name}_{k}": {"value": v, "timestamp": self.timestamp} for k, v in self.values.items()}

    def describe(self) -> dict[str, dict]:
        # Arrays (a fit's DRT) keep one length per stream, so their shape goes in the descriptor;
        # strings are the reasons a value was left out.
        return {f"{self.name}_{k}": {"source": self.source, "shape": list(np.shape(v)),
                                     "dtype": "string" if isinstance(v, str) else "array" if np.ndim(v) else "number"}
                for k, v in self.values.items()}


def plan_metadata(name: str, args: dict[str, Any], md: dict | None, **extra) -> dict:
    """Return start-document metadata in bluesky's convention (plan_name, plan_args) plus ``md``."""
    return {"plan_name": name, "plan_args": args, **extra, **(md or {})}
