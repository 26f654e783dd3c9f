"""A session: the clock, a RunEngine whose sleep follows that clock, the lab, and storage."""

from __future__ import annotations

import asyncio

from bluesky import RunEngine

from labctl.clock import VirtualClock, WallClock


def make_run_engine(clock: VirtualClock | WallClock, pace: float | None = None, **kwargs) -> RunEngine:
    """Return a RunEngine whose ``sleep`` advances ``clock`` when it is virtual.

    Parameters
    ----------
    clock : VirtualClock or WallClock
        The session clock.
    pace : float, optional
        For demos on the virtual clock: simulated seconds per wall second (e.g. 3600 shows an
        hour a second). None runs as fast as the computer can.
    """
    RE = RunEngine({}, call_returns_result=True, **kwargs)
    if getattr(clock, "is_virtual", False):
        RE.register_command("sleep", _virtual_sleep(clock, pace))
    return RE


def _virtual_sleep(clock: VirtualClock, pace: float | None):
    async def sleep(msg):
        seconds = float(msg.args[0])
        if pace:
            await asyncio.sleep(seconds / pace)
        clock.advance(seconds)

    return sleep
