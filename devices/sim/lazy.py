"""What the chamber and rig simulators share: lazy, forward-only integration on the session clock."""

from __future__ import annotations

import numpy as np

from labctl.core.clock import Clock


class LazySimulator:
    """A simulator that integrates its state only when asked, and only forwards in time.

    Subclasses keep ``self._time``, the time their state has been integrated to.
    """

    def __init__(self, clock: Clock, params, rng: np.random.Generator | None) -> None:
        self.clock = clock
        self.params = params
        self.rng = rng if rng is not None else np.random.default_rng()
        self._time = self._origin = clock.now()
        # Readings draw their noise from (this key, the reading's time): a retried or repeated read
        # (a link timeout under load) sees the same value and shifts no other draw.
        self._reading_key = int(self.rng.integers(2**63))
        self.step_count = 0  # integration segments or sub-steps so far: the simulation's cost

    @property
    def integrated_until(self) -> float:
        """Get the time the simulation has been integrated to, s."""
        return self._time

    def history_or_now(self, query):
        """Return ``query`` wrapped so that asking for a time already passed gives the latest state.

        Simulators integrate lazily and only forwards; another simulator catching up on its own
        past (the cell, the rig) then sees this one's most recent state, which on the minutes
        these quantities change over is the same thing.
        """
        return lambda t: query(max(t, self._time))

    def reading_noise(self, t: float) -> float:
        """Return a standard-normal draw fixed by the seed and the session time ``t`` (to the ms)."""
        tick = int(round((t - self._origin) * 1e3))
        return float(np.random.default_rng([self._reading_key, tick & (2**63 - 1)]).standard_normal())

    def _when(self, t: float | None) -> float:
        return self.clock.now() if t is None else float(t)
