"""Plan stubs shared by every plan: waiting on the session clock, recording the environment, computed
values and the outcome, the start document's metadata. The potentiostat's own stubs are in
:mod:`plans.potentiostat` and :mod:`plans.spectra`, the run itself in :mod:`plans.run`."""

from __future__ import annotations

import typing
from typing import Any, Callable, Iterable

import bluesky.plan_stubs as bps
import numpy as np
from bluesky.utils import Msg, MsgGenerator

from labctl.core.errors import LabctlError
from labctl.core.units import find_unit, si_unit_name

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

    def __init__(self, failure: Exception, error: Exception) -> None:
        self.failure, self.error = failure, error
        super().__init__(f"{str(failure) or type(failure).__name__}; then {error}")


def wait_recording(status, readables: Iterable[Any], interval: float, group: str) -> MsgGenerator[None]:
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


def wait_for(status, group: str, expected: float = 0.0, poll: float = 1.0) -> MsgGenerator[None]:
    """Wait for ``status``: sleep the ``expected`` duration at once, then in ``poll`` steps.

    One sleep for the expected part keeps a long wait to a few messages (each plan stub costs
    bluesky a stack capture); polling covers an instrument slower than expected. Time passes
    through ``bps.sleep`` as in :func:`wait_recording`.
    """
    if expected > 0 and not status.done:
        yield from bps.sleep(expected)
    yield from wait_recording(status, [], poll, group)


def open_circuit(potentiostat) -> MsgGenerator[None]:
    """Put the cell at open circuit: the RunEngine calls the channel's ``stop()``, which raises if it cannot."""
    yield Msg("stop", potentiostat)


class ComputedValues:
    """Values a plan computes during a run (fits, derived figures), read into a stream like a detector.

    bluesky reads it with ``bps.read``: :meth:`update` sets the values and their time first. The
    keys must stay the same from one reading to the next (they make the stream's descriptor).
    ``units`` (by key) go into the descriptor as each field's ``units``; ``hinted`` names the keys
    live callbacks show (BestEffortCallback plots and tables a stream's hinted fields).
    """

    parent = None

    def __init__(self, name: str, source: str, units: dict[str, str] | Callable[[str], str | None] | None = None,
                 hinted: Iterable[str] = ()) -> None:
        self.name, self.source = name, source
        self.units = units if callable(units) else dict(units or {})
        self.hinted = tuple(hinted)
        self.values: dict[str, Any] = {}
        self.timestamp = 0.0

    def update(self, values: dict[str, Any], timestamp: float) -> None:
        self.values, self.timestamp = dict(values), timestamp

    def read(self) -> dict[str, dict]:
        return {f"{self.name}_{k}": {"value": v, "timestamp": self.timestamp} for k, v in self.values.items()}

    def describe(self) -> dict[str, dict]:
        return {f"{self.name}_{k}": self._data_key(k, v) for k, v in self.values.items()}

    @property
    def hints(self) -> dict[str, list[str]]:
        return {"fields": [f"{self.name}_{k}" for k in self.hinted if k in self.values]}

    def _data_key(self, key: str, value: Any) -> dict:
        # Arrays (a fit's DRT) keep one length per stream, so their shape goes in the descriptor;
        # strings are the reasons a value was left out.
        described = {"source": self.source, "shape": list(np.shape(value)),
                     "dtype": "string" if isinstance(value, str) else "array" if np.ndim(value) else "number"}
        unit = self.units(key) if callable(self.units) else self.units.get(key)
        if unit is not None:
            described["units"] = unit
        return described


#: What live callbacks show of the ``impedance_fit`` stream: the fitted resistances, ohm.
FIT_HINTS = ("r_bulk", "r_interface", "r_blocking", "r_short")


def fit_unit(key: str) -> str | None:
    """The unit of one value of :meth:`labctl.core.analysis.FitResult.summary` (by its name), or None if unitless."""
    name = key.removesuffix("_err")
    if name.startswith("asr_"):
        return "ohm cm^2"
    if name.startswith(("r_", "R")):
        return "ohm"
    if name.startswith("Q"):
        return "F s^(a-1)"  # a CPE's Q: Z = 1 / (Q (j omega)^a)
    return None  # the CPE exponents a, the relative residual


#: The stream holding a plan's outcome: one event at the end of the run (see :func:`record_result`).
RESULT = "result"


def record_result(ended_by: str, reason: str, timestamp: float, values: dict[str, float] | None = None,
                  units: dict[str, str] | None = None) -> MsgGenerator[None]:
    """Store how a plan ended as the one event of its ``result`` stream, before ``close_run``.

    Parameters
    ----------
    ended_by : str
        A short code for why the plan ended (``short``, ``capacity``, ``time``, ``voltage_limit``,
        ``guard``, ``cycles``, ``steady``, ...): what scripts test, where ``reason`` is for people.
    reason : str
        The stop reason, as the stop document also says it.
    timestamp : float
        When it ended, on the session clock.
    values : dict, optional
        The plan's figures, SI; NaN where the plan could not determine one (e.g. no short).
    units : dict, optional
        The unit of each value, recorded in the stream's descriptor.

    labctl's RunEngine also copies the event into the stop document as ``result`` (NaN as null),
    so ``labctl runs --json`` and catalog searches see it without reading the stream.
    """
    result = ComputedValues(RESULT, source="labctl plan outcome", units=units)
    result.update({"ended_by": ended_by, "reason": reason, **(values or {})}, timestamp)
    yield from bps.create(name=RESULT)
    yield from bps.read(result)
    yield from bps.save()


def plan_metadata(plan: Callable, args: dict[str, Any], md: dict | None, **extra) -> dict:
    """Return start-document metadata in bluesky's convention (plan_name, plan_args) plus ``md``.

    ``plan_args_units`` gives the SI unit of every argument that has one (from the :class:`Unit`
    in ``plan``'s signature), so the SI floats of ``plan_args`` can be read without the code.
    """
    return {"plan_name": plan.__name__, "plan_args": args, "plan_args_units": argument_units(plan, args),
            **extra, **(md or {})}


def argument_units(plan: Callable, args: dict[str, Any]) -> dict[str, str]:
    """The SI unit of each of ``args`` whose parameter of ``plan`` declares a :class:`~labctl.core.units.Unit`."""
    hints = typing.get_type_hints(plan, include_extras=True)
    units = {name: find_unit(hints[name]) for name in args if name in hints}
    return {name: si_unit_name(unit.display) for name, unit in units.items() if unit is not None}
