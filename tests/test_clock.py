"""The virtual clock and the RunEngine sleep that drives it."""

import bluesky.plan_stubs as bps
import pytest

from labctl.core.clock import VirtualClock
from labctl.session import make_run_engine


def test_callbacks_run_in_time_order_as_the_clock_passes_them():
    clock = VirtualClock(start=0.0)
    seen = []
    clock.call_at(30, lambda: seen.append(("b", clock.now())))
    clock.call_at(10, lambda: seen.append(("a", clock.now())))
    cancelled = clock.call_at(20, lambda: seen.append(("x", clock.now())))
    cancelled.cancel()
    clock.advance(25)
    assert seen == [("a", 10)] and clock.now() == 25
    clock.advance(100)
    assert seen == [("a", 10), ("b", 30)] and clock.now() == 125


def test_a_callback_may_schedule_another_within_the_same_advance():
    clock = VirtualClock(start=0.0)
    ticks = []

    def tick():
        ticks.append(clock.now())
        if clock.now() < 50:
            clock.call_at(clock.now() + 10, tick)

    clock.call_at(10, tick)
    clock.advance(100)
    assert ticks == [10, 20, 30, 40, 50]


def test_clock_refuses_to_go_back():
    with pytest.raises(ValueError, match="back in time"):
        VirtualClock(start=0.0).advance(-1)


def test_run_engine_sleep_advances_the_virtual_clock_not_the_wall_clock():
    clock = VirtualClock(start=1000.0)
    RE = make_run_engine(clock)

    def plan():
        for _ in range(24):
            yield from bps.sleep(3600)

    RE(plan())
    assert clock.now() == 1000.0 + 24 * 3600
