"""The one retry policy every driver uses, and the poll helper on the clock."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.retry import LATE_POLL, Poller, RetryPolicy, retry, schedule_poll
from labctl.core.clock import VirtualClock


class Flaky:
    """Fails ``failures`` times with ``error``, then answers 42."""

    def __init__(self, failures, error=TimeoutError("no reply")):
        self.failures, self.error, self.calls = failures, error, 0

    def __call__(self):
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return 42


def run(call, policy, sleeps, dropped):
    return retry(call, policy=policy, transient=lambda e: isinstance(e, OSError),
                 give_up=lambda e, n: ConnectionError(f"lost after {n}: {e}"), on_failure=dropped.append,
                 sleep=sleeps.append, label="test")


@pytest.mark.parametrize("attempts", range(1, 9))
@pytest.mark.parametrize("backoff, cap", [(0.001, 1.0), (0.05, 2.0), (0.3, 1.0), (1.0, 5.0)])
def test_the_waits_double_up_to_the_cap_one_fewer_than_the_attempts(attempts, backoff, cap):
    delays = list(RetryPolicy(attempts, backoff, cap).delays())
    assert len(delays) == attempts - 1
    assert all(b == pytest.approx(min(2 * a, cap)) for a, b in zip(delays, delays[1:]))
    assert all(d <= cap for d in delays)


@pytest.mark.parametrize("failures", range(0, 6))
def test_a_call_gets_every_attempt_then_the_drivers_error(failures):
    sleeps, dropped, call = [], [], Flaky(failures)
    policy = RetryPolicy(attempts=4)
    if failures < 4:
        assert run(call, policy, sleeps, dropped) == 42
        assert call.calls == failures + 1 and len(dropped) == failures
    else:
        with pytest.raises(ConnectionError, match="lost after 4: no reply"):
            run(call, policy, sleeps, dropped)
        assert call.calls == 4 and len(dropped) == 4, "the connection is dropped after the last failure too"
    assert sleeps == [0.05, 0.1, 0.2][:min(failures, 3)]


def test_a_failure_that_is_not_transient_is_raised_at_once():
    sleeps, dropped, call = [], [], Flaky(1, ValueError("refused"))
    with pytest.raises(ValueError, match="refused"):
        run(call, RetryPolicy(), sleeps, dropped)
    assert call.calls == 1 and sleeps == [] and dropped == []


def test_a_policy_that_cannot_try_is_refused():
    with pytest.raises(ValueError, match="attempts >= 1"):
        RetryPolicy(attempts=0)


@pytest.mark.parametrize("now, end, interval, expected", [
    (0.0, 100.0, 60.0, 60.0),  # every interval before the end
    (50.0, 100.0, 60.0, 100.0),  # never later than the expected end
    (100.0, 100.0, 60.0, 100.0 + LATE_POLL),  # then every LATE_POLL until it stops
    (150.0, 100.0, 60.0, 150.0 + LATE_POLL),
])
def test_polls_come_every_interval_then_at_the_end_then_often(now, end, interval, expected):
    clock, seen = VirtualClock(start=now), []
    schedule_poll(clock, end, interval, lambda: seen.append(clock.now()))
    clock.advance(expected - now)
    assert seen == [expected]


@settings(max_examples=60, deadline=None)
@given(interval=st.floats(0.5, 600.0), duration=st.floats(0.0, 3600.0), late_looks=st.integers(0, 5))
def test_a_poller_looks_on_the_schedule_until_a_look_says_the_measurement_stopped(interval, duration, late_looks):
    clock = VirtualClock(start=1e6)
    start, seen = clock.now(), []
    end = start + duration
    # The measurement reports "stopped" on the ``late_looks``-th look after its expected end.
    poller = Poller(clock, interval, lambda: seen.append(clock.now()) or len([t for t in seen if t >= end]) <= late_looks)
    poller.start(end)
    clock.advance(duration + (late_looks + 2) * LATE_POLL)
    expected, now = [], start
    while len([t for t in expected if t >= end]) <= late_looks:
        now = min(now + interval, end) if now < end else now + LATE_POLL
        expected.append(now)
    assert seen == pytest.approx(expected) and clock.next_event() is None


def test_a_stopped_poller_looks_no_more_and_a_restart_from_a_look_schedules_once():
    clock, seen = VirtualClock(start=0.0), []
    poller = Poller(clock, 10.0, lambda: seen.append(clock.now()) or True)
    poller.start(100.0)
    clock.advance(25.0)
    poller.stop()
    clock.advance(100.0)
    assert seen == [10.0, 20.0] and clock.next_event() is None

    def look_then_restart() -> bool:
        seen.append(clock.now())
        if len(seen) == 3:
            restarting.start(clock.now() + 50.0)  # the next measurement starts from the end callback
        return True

    restarting = Poller(clock, 10.0, look_then_restart)
    restarting.start(clock.now() + 5.0)
    clock.advance(30.0)
    assert seen == [10.0, 20.0, 130.0, 140.0, 150.0], "one look at a time, not two"
