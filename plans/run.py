"""The run every plan makes, written once: :func:`run_plan` and the :class:`Outcome` a plan returns.

A plan's body only measures: it is a generator that runs inside an open run and returns how it
ended. The decorator records its arguments, stages the potentiostat, opens the run, stores the
outcome (the ``result`` stream and the stop document's exit status and reason) and, whatever
happens, puts the cell at open circuit and collects the last rows.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, ParamSpec

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
from bluesky.utils import Msg, MsgGenerator

from plans.stubs import NotAtOpenCircuit, open_circuit, plan_metadata, record_result

POTENTIOSTAT = "potentiostat"  # the collected stream of the channel's rows (see plans.potentiostat)
P = ParamSpec("P")
#: Endings of a step that did not do what it was for: the potentiostat's voltage limit (the cell lost
#: contact, or voids), a guard that ended it (a condition out of band). Their runs close ``fail``.
FAILED = ("voltage_limit", "guard")


@dataclass(frozen=True)
class Outcome:
    """How a plan ended, as its run records it.

    Parameters
    ----------
    ended_by : str
        A short code (``short``, ``capacity``, ``time``, ``voltage_limit``, ``guard``, ...), the
        ``result`` stream's ``ended_by``.
    reason : str
        The stop reason, for people; also what the plan returns.
    time : float
        When it ended, on the session clock.
    values, units : dict, optional
        The plan's figures (SI; NaN where not determined) and their units, in the ``result`` stream.
    """

    ended_by: str
    reason: str
    time: float
    values: dict[str, Any] = field(default_factory=dict)
    units: dict[str, str] | None = None

    @property
    def exit_status(self) -> str:
        """Get the stop document's exit status: ``fail`` for the endings in :data:`FAILED`, else ``success``."""
        return "fail" if self.ended_by in FAILED else "success"


def run_plan(check: Callable[..., None] | None = None, metadata: Callable[..., dict] | None = None
             ) -> Callable[[Callable[P, MsgGenerator[Outcome]]], Callable[P, MsgGenerator[str]]]:
    """Make a plan of a body that runs inside one bluesky run and returns its :class:`Outcome`.

    Parameters
    ----------
    check : callable, optional
        Called with every argument by name before any message: raises (``ValueError``) to refuse
        them, so a refused call leaves no run behind.
    metadata : callable, optional
        Called likewise; returns extra start-document metadata (e.g. ``impedance_device``).

    The start document has ``plan_name`` (the function's name), ``plan_args`` (every argument,
    defaults included, SI as passed; devices by name; ``md`` and objects that are not plain data,
    such as guards, left out) and ``plan_args_units`` (from the :class:`~labctl.core.units.Unit` in the
    signature), then ``md``. A plan with a ``potentiostat`` stages it for the run and leaves it at
    open circuit however the run ends (see :func:`at_open_circuit`); with an ``impedance_analyser``
    the analyser's generator is switched off too. The plan returns the outcome's reason.
    """

    def decorate(body: Callable[P, MsgGenerator[Outcome]]) -> Callable[P, MsgGenerator[str]]:
        signature = inspect.signature(body)

        @functools.wraps(body)
        def plan(*args: P.args, **kwargs: P.kwargs) -> MsgGenerator[str]:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            named = dict(bound.arguments)
            if check is not None:
                check(**named)
            extra = metadata(**named) if metadata is not None else {}
            md = plan_metadata(body, recorded_arguments(signature, named), named.get("md"), **extra)
            run = _documented(body(*bound.args, **bound.kwargs), md)
            if named.get("impedance_analyser") is not None:
                run = bpp.finalize_wrapper(run, _generator_off(named["impedance_analyser"]))
            if named.get("potentiostat") is not None:
                run = at_open_circuit(named["potentiostat"], run)
            return (yield from run)

        plan.__annotations__ = {**body.__annotations__, "return": "MsgGenerator[str]"}
        plan.__signature__ = signature.replace(return_annotation="MsgGenerator[str]")  # type: ignore[attr-defined]
        return plan

    return decorate


def recorded_arguments(signature: inspect.Signature, named: dict[str, Any]) -> dict[str, Any]:
    """The arguments as ``plan_args`` records them: devices (positional) by name, plain data as passed."""
    recorded = {}
    for name, value in named.items():
        kind = signature.parameters[name].kind
        if kind is inspect.Parameter.POSITIONAL_OR_KEYWORD:  # a device
            if value is not None:
                recorded[name] = value.name
        elif name != "md" and _plain(value):
            recorded[name] = value
    return recorded


def _plain(value: Any) -> bool:
    """Whether ``value`` is data a start document can hold (numbers, text, lists and mappings of them)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


def _documented(body: MsgGenerator[Outcome], md: dict) -> MsgGenerator[str]:
    """Open the run, run the body, store its outcome and close the run with it."""
    yield from bps.open_run(md)
    outcome = yield from body
    yield from record_result(outcome.ended_by, outcome.reason, outcome.time, outcome.values, outcome.units)
    yield from bps.close_run(exit_status=outcome.exit_status, reason=outcome.reason)
    return outcome.reason


def _generator_off(analyser) -> MsgGenerator[None]:
    yield Msg("stop", analyser)


def at_open_circuit(potentiostat, plan: MsgGenerator[str]) -> MsgGenerator[str]:
    """Stage the channel for the run and leave the cell at open circuit whatever happens.

    If opening the circuit fails too (the potentiostat itself is lost), the error that ends the run
    names both failures, so the stop document's reason says the cell may not be at open circuit and
    why. The rows measured since the last page are collected before the channel is unstaged, so an
    abort (Ctrl-C twice, SIGTERM, ``RE.abort()``) keeps every row. The run does not rewind: a paused
    flyer cannot be replayed (the pause opened the circuit, ending its technique), so after
    ``RE.resume()`` the plan goes on from where it was (:func:`plans.potentiostat.timed_step`).
    """
    failures: list[Exception] = []

    def watched() -> MsgGenerator[str]:
        try:
            return (yield from plan)
        except Exception as failure:
            failures.append(failure)
            raise

    def open_circuit_and_collect() -> MsgGenerator[None]:
        try:
            yield from open_circuit(potentiostat)
        except Exception as error:
            if not failures:
                raise
            raise NotAtOpenCircuit(failures[0], error) from error
        finally:
            if getattr(potentiostat, "collect_pending", False):
                yield from bps.collect(potentiostat, name=POTENTIOSTAT)

    safely = bpp.finalize_wrapper(watched(), open_circuit_and_collect())
    return (yield from bpp.rewindable_wrapper(bpp.stage_wrapper(safely, [potentiostat]), False))
