"""Guards: what a long electrochemical step does when its conditions leave their bands.

An experiment file says, per condition, whether to ``pause`` (cell to open circuit, wait until
the condition has been back in band for ``resume_after``, then go on; end if that takes longer
than ``give_up_after`` in all) or to ``end`` the step. Conditions: the chamber temperature against its
setpoint, the stack pressure against the rig's target, and the potentiostat reaching its
compliance (the instrument-side voltage limit). Every decision is an event of the run's
``guards`` stream (time, condition, value, action) and the stop reason names the one that ended it.

These play the part of bluesky's suspenders, checked inside the plan instead of by the
RunEngine: a suspender rewinds to the last checkpoint and replays messages, which would start a
plating technique twice, and it cannot record its decisions in the run or end it with a reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import bluesky.plan_stubs as bps
from bluesky.utils import Msg, MsgGenerator

from plans.stubs import ComputedValues, open_circuit

GUARDS = "guards"
ACTIONS = ("pause", "end")
# Codes of the ``guards`` stream's numeric fields (streams hold numbers, the reason says it in words).
CONDITIONS = {"temperature": 0, "pressure": 1, "compliance": 2}
DECISIONS = {"paused": 0, "resumed": 1, "ended": 2}


@dataclass(frozen=True)
class Guard:
    """The policy for one condition.

    Parameters
    ----------
    action : str
        ``pause`` or ``end``.
    band : float, optional
        Allowed deviation from the setpoint (K for temperature, Pa for pressure); none for compliance.
    resume_after : float
        Seconds back in band (for compliance: at open circuit) before a paused step goes on.
    give_up_after : float
        Seconds paused in all (one step may pause several times) after which the step ends.
    """

    action: str = "end"
    band: float | None = None
    resume_after: float = 600.0
    give_up_after: float = 7200.0

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"guard action must be one of {ACTIONS}, not {self.action!r}")


@dataclass
class Guards:
    """The guards of one step, and the run's record of what they decided."""

    temperature: Guard | None = None
    pressure: Guard | None = None
    compliance: Guard | None = None
    check_interval: float = 60.0
    paused_for: float = 0.0
    record: ComputedValues = field(default_factory=lambda: ComputedValues(GUARDS, source="plans.guards"))

    def __bool__(self) -> bool:
        return any((self.temperature, self.pressure, self.compliance))

    def for_step(self, check_interval: float) -> Guards:
        """Return these policies for one step checking every ``check_interval`` s, with a fresh record
        (a copy: the caller's guards are not changed)."""
        return Guards(self.temperature, self.pressure, self.compliance, check_interval=check_interval)

    def breach(self, chamber, rig) -> MsgGenerator[tuple[str, float, str] | None]:
        """Plan: read the guarded conditions; return (condition, value, message) of the first out of band, or None."""
        for name, device, reading, target in (("temperature", chamber, "temperature", "setpoint"),
                                              ("pressure", rig, "pressure", "target")):
            guard = getattr(self, name)
            if guard is None or device is None:
                continue
            value = yield from _value(getattr(device, reading))
            wanted = yield from _value(getattr(device, target))
            if abs(value - wanted) > guard.band:
                unit, scale = ("K", 1.0) if name == "temperature" else ("MPa", 1e-6)
                return name, value, (f"{name} {value * scale:.3f} {unit} is more than {guard.band * scale:g} {unit} "
                                     f"from its setpoint {wanted * scale:.3f} {unit}")
        return None

    def respond(self, potentiostat, chamber, rig, condition: str, value: float,
                message: str) -> MsgGenerator[str | None]:
        """Plan: act on a breach; return None when the step may go on, else the reason it ends."""
        guard = getattr(self, condition)
        yield from open_circuit(potentiostat)
        if guard.action == "end":
            yield from self._note(condition, value, "ended", potentiostat)
            return f"guard: {message}; ended as the experiment's guards say"
        yield from self._note(condition, value, "paused", potentiostat)
        clear_since = 0.0
        while self.paused_for < guard.give_up_after:  # all pauses of the step count together
            yield Msg("sleep", None, self.check_interval)
            self.paused_for += self.check_interval
            still = (yield from self.breach(chamber, rig)) if condition != "compliance" else None
            clear_since = 0.0 if still and still[0] == condition else clear_since + self.check_interval
            if clear_since >= guard.resume_after:
                yield from self._note(condition, value, "resumed", potentiostat)
                return None
        yield from self._note(condition, value, "ended", potentiostat)
        return f"guard: {message}; not back in band within {guard.give_up_after / 3600:g} h, ended"

    def _note(self, condition: str, value: float, decision: str, potentiostat) -> MsgGenerator[None]:
        """One event of the guards stream: when, which condition, its value, what was decided."""
        time = potentiostat.clock.now()
        self.record.update({"condition": CONDITIONS[condition], "value": value, "decision": DECISIONS[decision]}, time)
        yield from bps.create(name=GUARDS)
        yield from bps.read(self.record)
        yield from bps.save()


def _value(signal) -> MsgGenerator[Any]:
    # A bare Msg, not bps.rd: checked every minute of a long run (see plans.potentiostat.latest).
    return (yield Msg("read", signal))[signal.name]["value"]
