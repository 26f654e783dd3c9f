"""Plan stubs for timed techniques on a potentiostat channel: running one, sampling and paging it,
and timed steps that go on through pauses for the time they have left."""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import bluesky.plan_stubs as bps
from bluesky.utils import Msg, MsgGenerator

from devices.biologic.channel import PotentiostatChannel
from plans.guards import Guards
from plans.run import POTENTIOSTAT
from plans.stubs import ENVIRONMENT, open_circuit

PRIMARY = "primary"  # the latest voltage and current at every check (see sample)

#: A check: a plan run every check interval returning why to stop (text), a guard's breach
#: ``(condition, value, message)``, or None to go on.
Check = Callable[[], MsgGenerator[Any]]


class Ended(NamedTuple):
    """How a timed technique ended."""

    end: str  #: the instrument's end reason: ``completed``, ``voltage limit``, ``stopped``, ...
    stop: Any  #: why the plan ended it early (a short, a guard, a steady state), or None
    ran: float  #: seconds the technique ran, time paused not counted


def run_technique(potentiostat: PotentiostatChannel, technique, environment: list, *, page_interval: float,
                  check: Check | None = None, check_interval: float | None = None) -> MsgGenerator[tuple[str, Any]]:
    """Run a timed technique on the channel, collecting a page and the environment every ``page_interval``.

    ``check()`` is a plan returning a reason to stop early (or None); it runs every
    ``check_interval`` (default: every page), reading the channel's latest sample, so a short is
    caught quickly without cutting the stored data into small pages.
    Returns ``(end_reason, stop_reason)``: why the instrument ended the technique, and why the
    plan stopped it early, if it did.
    """
    interval = min(check_interval or page_interval, page_interval)
    yield from bps.prepare(potentiostat, technique, wait=True)
    yield from bps.kickoff(potentiostat, wait=True)
    status = yield from bps.complete(potentiostat, wait=False, group="technique")
    elapsed, since_page, stop_reason = 0.0, 0.0, None
    while not status.done:
        step = min(interval, technique.duration - elapsed) if technique.duration > elapsed else interval
        # A bare Msg, not bps.sleep: every plan-stub call captures the stack (bluesky's
        # never-iterated warning), which was a fifth of a simulated day's wall time.
        yield Msg("sleep", None, step)
        elapsed, since_page = elapsed + step, since_page + step
        yield from sample(potentiostat)
        if since_page >= page_interval and not status.done:
            yield from page(potentiostat, environment)
            since_page = 0.0
        if check is not None and not stop_reason:
            stop_reason = yield from check()
            if stop_reason:
                yield from open_circuit(potentiostat)
    yield from bps.wait(group="technique")
    yield from page(potentiostat, environment)
    return (yield from bps.rd(potentiostat.end_reason)), stop_reason


def timed_step(potentiostat: PotentiostatChannel, technique: Callable[[float], Any], duration: float,
               environment: list, *, sample_interval: float, page_interval: float, check: Check | None = None,
               check_interval: float | None = None, guards: Guards | None = None, chamber=None,
               rig=None) -> MsgGenerator[Ended]:
    """Run ``technique(seconds)`` for ``duration`` s of its own time, going on after pauses for the time left.

    A pause of the RunEngine (Ctrl-C) opens the circuit, which ends the technique ``stopped``; after
    ``RE.resume()`` it starts again for the time it has left. So does a guard's pause: ``check``
    returns a breach ``(condition, value, message)``, the guards pause at open circuit or end the
    step (:meth:`plans.guards.Guards.respond`), and at the voltage limit the compliance guard does
    the same. Each run is timed from its start to the channel's ``ended_at``, so time paused is
    not counted. Less than one sample left counts as done.
    """
    ran = 0.0
    while True:
        began = potentiostat.clock.now()
        end, stop = yield from run_technique(potentiostat, technique(duration - ran), environment,
                                             page_interval=page_interval, check=check, check_interval=check_interval)
        ran += (yield from bps.rd(potentiostat.ended_at)) - began
        if guards is not None and guards.compliance and end == "voltage limit" and not stop:
            stop = ("compliance", (yield from bps.rd(potentiostat.ewe)), "the potentiostat reached its voltage limit")
        if isinstance(stop, tuple):  # a guard's condition left its band: pause or end, as the guards say
            stop = yield from guards.respond(potentiostat, chamber, rig, *stop)
            if stop:
                return Ended(end, stop, ran)  # "voltage limit" when the compliance guard ended it
        elif stop or end != "stopped":  # not a pause: the technique's own end, or the plan's
            return Ended(end, stop, ran)
        if duration - ran < sample_interval:
            return Ended("completed", None, ran)


def sample(potentiostat: PotentiostatChannel) -> MsgGenerator[None]:
    """Read the latest voltage and current into the ``primary`` stream, for live callbacks.

    The full-rate rows go to the ``potentiostat`` stream as pages (StreamDatum), which callbacks
    such as BestEffortCallback and LiveTable cannot show; one event per check keeps them informed
    (``potentiostat_ewe`` is hinted). Bare Msgs, for speed as in run_technique.
    """
    yield Msg("create", None, name=PRIMARY)
    yield Msg("read", potentiostat.ewe)
    yield Msg("read", potentiostat.current)
    yield Msg("save")


def page(potentiostat: PotentiostatChannel, environment: list) -> MsgGenerator[None]:
    """Hand the rows measured so far to storage and read the environment beside them."""
    yield from bps.collect(potentiostat, name=POTENTIOSTAT)
    if environment:
        yield from bps.trigger_and_read(environment, name=ENVIRONMENT)


def latest(signal) -> MsgGenerator[dict]:
    """Read one signal's reading (value, timestamp) with a bare Msg: checked every minute of a long run."""
    return (yield Msg("read", signal))[signal.name]
