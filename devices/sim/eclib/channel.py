"""The simulated SP-200's channel: the techniques loaded, their run on the cell, the records they write.

The channel runs loaded techniques in order (a LOOP jumping back), each step for its duration, a
limit test that trips ending the step at, and recording, the sample that met it. It records rows on
the ``Record_every_dT`` grid; an impedance sweep writes its DC Ewe and I as process 0 every
``Record_every_dT`` for the whole sweep and one process-1 record per frequency when that frequency
is done, the spectrum being the cell's at the sweep's start. The physics runs lazily, up to the
clock's present, whenever :meth:`SimChannel.advance` is called: the library calls it on every
request, as there are no callbacks with the real instrument either. The channel refuses nothing:
what the instrument accepts is the library's check (:mod:`devices.sim.eclib.library`).
"""

from __future__ import annotations

import numpy as np

from devices.biologic import eclib
from devices.sim.cell import SimCell
from devices.sim.eclib.records import Chunk, Memory, dc_records, sweep_records
from devices.sim.eclib.techniques import LIMITED, SWEEPS, Loaded, Value
from labctl.core.clock import Clock

E_RANGE_VOLTS = {0: 2.5, 1: 5.0, 2: 10.0, 3: 10.0}
EIS_SETTLE = 0.1  # s per frequency besides the periods averaged, as techniques.sweep_duration


class SimChannel:
    """One channel with ``cell`` wired to it, on ``clock``; ``board_type`` decides the record layouts."""

    def __init__(self, clock: Clock, cell: SimCell, board_type: int):
        self.clock, self.cell, self.board_type = clock, cell, board_type
        self.loaded: list[Loaded] = []
        self.built = False  # the last technique was loaded with its "last" flag
        self.state = eclib.STATE_STOP
        self.memory = Memory()
        self.latest = (cell.open_circuit_voltage(), 0.0)  # Ewe, I
        self.t0: float | None = None  # when the channel last started
        self.index = self.loop_number = self.step = self.cycle = 0
        self.loop_counts: dict[int, int] = {}
        self.tech_start = self.step_start = self.sampled = self.step_end = 0.0
        self.frequencies = self.impedance = self.point_times = np.empty(0)
        self.points_done = 0

    @property
    def running(self) -> bool:
        """Get whether the channel runs a technique, as of the last :meth:`advance`."""
        return self.state == eclib.STATE_RUN

    @property
    def technique(self) -> Loaded | None:
        """Get the technique running, or None."""
        return self.loaded[self.index] if self.running else None

    # ---- what the library asks ------------------------------------------------------------------
    def load(self, technique: Loaded, first: bool, last: bool) -> None:
        """Load ``technique`` after those loaded (in their place if ``first``); ``last`` closes the sequence."""
        if first:
            self.loaded, self.built = [], False
        self.loaded.append(technique)
        self.built = last

    def update(self, index: int, values: dict[str, dict[int, Value]]) -> None:
        """Change parameters of loaded technique ``index``, running or not."""
        for label, by_index in values.items():
            self.loaded[index].values.setdefault(label, {}).update(by_index)

    def start(self) -> None:
        """Start the loaded sequence now, the cell having been at open circuit since the last technique."""
        now = self.clock.now()
        self.cell.advance(now, 0.0)
        self.state, self.t0, self.loop_number, self.loop_counts = eclib.STATE_RUN, now, 0, {}
        self._begin(0, now)

    def stop(self) -> None:
        """Open the circuit; what was measured stays in memory."""
        self.state = eclib.STATE_STOP

    def fill_values(self, values: eclib.CurrentValues, timebase: float) -> None:
        """Fill ``values`` (``TCurrentValues``) with the channel's state and latest readings."""
        technique = self.technique
        e_range = E_RANGE_VOLTS[technique.get("E_Range", default=2) if technique else 2]
        values.State, values.MemFilled, values.TimeBase = self.state, self.memory.nbytes, timebase
        # A stopped channel is at open circuit: the cell's own voltage, no current.
        values.Ewe, values.I = self.latest if self.running else (self.cell.open_circuit_voltage(), 0.0)
        values.EweRangeMin, values.EweRangeMax = -e_range, e_range
        values.IRange = technique.get("I_Range", default=12) if technique else 12
        now = self.clock.now()
        values.ElapsedTime = now - (now if self.t0 is None else self.t0)

    def advance(self) -> None:
        """Run the channel up to now: record what it measured, move through steps and techniques."""
        now = self.clock.now()
        while self.running:
            technique = self.loaded[self.index]
            if technique.stem in SWEEPS:
                self._record_sweep(technique, min(now, self.step_end))
            else:
                limit_hit = self._record_step(technique, min(now, self.step_end))
                if limit_hit is not None:
                    self._after_limit(technique, limit_hit)
                    continue
            if now < self.step_end:
                return
            self._next(technique, self.step_end)

    # ---- moving through the sequence -----------------------------------------------------------
    def _begin(self, index: int, when: float) -> None:
        """Start technique ``index`` at ``when``; a LOOP jumps at once."""
        while index < len(self.loaded) and self.loaded[index].stem == "loop":
            loop = self.loaded[index]
            done = self.loop_counts.get(index, 0)
            if done < loop.get("loop_N_times"):
                self.loop_counts[index], self.loop_number = done + 1, self.loop_number + 1
                index = loop.get("protocol_number")
            else:
                index += 1
        if index >= len(self.loaded):
            self.stop()
            return
        self.index, self.tech_start, self.step, self.cycle = index, when, 0, 0
        technique = self.loaded[index]
        if technique.stem in SWEEPS:
            self._begin_sweep(technique, when)
        else:
            self._begin_step(when)

    def _begin_step(self, when: float) -> None:
        technique = self.loaded[self.index]
        self.step_start, self.sampled = when, when
        duration = technique.get("Rest_time_T") if technique.stem == "ocv" else technique.get("Duration_step", self.step)
        self.step_end = when + duration

    def _begin_sweep(self, technique: Loaded, when: float) -> None:
        count = technique.get("Frequency_number")
        f_max, f_min = technique.get("Initial_frequency"), technique.get("Final_frequency")
        self.frequencies = np.logspace(np.log10(f_max), np.log10(f_min), count)
        self.impedance = self.cell.impedance(self.frequencies)
        per_point = technique.get("Average_N_times") / self.frequencies + EIS_SETTLE
        self.point_times = when + np.cumsum(per_point)
        self.points_done, self.step_start, self.sampled = 0, when, when
        self.step_end = float(self.point_times[-1])

    def _next(self, technique: Loaded, when: float) -> None:
        """Go on after a step that ran its full duration."""
        stepped = technique.stem not in (*SWEEPS, "ocv")
        if stepped and self.step < technique.get("Step_number"):
            self.step += 1
            self._begin_step(when)
        elif stepped and self.cycle < technique.get("N_Cycles"):
            self.step, self.cycle = 0, self.cycle + 1
            self._begin_step(when)
        else:
            self._begin(self.index + 1, when)

    def _after_limit(self, technique: Loaded, when: float) -> None:
        exit_condition = technique.get("Exit_Cond", self.step)
        if exit_condition == 2:
            self.stop()
        elif exit_condition == 1:
            self._begin(self.index + 1, when)
        else:
            self.step_end = when
            self._next(technique, when)

    # ---- measuring -----------------------------------------------------------------------------
    def _grid(self, dt: float, until: float) -> np.ndarray:
        """Return the sample times of the current step after the last one recorded, up to ``until``."""
        # ``sampled`` is on the grid: round to its index. Times are absolute (~1e9 s, a float64 ulp
        # of ~1e-7 s), so with a 0.1 s step a floor could land one sample back and repeat it forever.
        first = np.rint((self.sampled - self.step_start) / dt) + 1
        last = np.floor((until - self.step_start) / dt + 1e-6)
        return self.step_start + dt * np.arange(first, last + 1)

    def _record_step(self, technique: Loaded, until: float) -> float | None:
        """Record OCV, CP, CA (with limits) samples up to ``until``; return the time a limit ended the step."""
        times = self._grid(technique.get("Record_every_dT") or 1.0, until)
        if len(times) == 0:
            return None
        if technique.stem in ("ca", "calimit"):
            voltage = technique.get("Voltage_step", self.step)
            current = self.cell.potentiostatic(times, voltage, since=self.step_start)
            ewe = voltage + self.cell.rng.normal(0, self.cell.params.voltage_noise, len(times))
        else:
            applied = 0.0 if technique.stem == "ocv" else technique.get("Current_step", self.step)
            ewe = self.cell.galvanostatic(times, applied)
            current = applied + self.cell.rng.normal(0, self.cell.params.current_noise, len(times))
        hit = self._limit_index(technique, ewe, current)
        keep = len(times) if hit is None else hit + 1  # the instrument records the point that tripped
        self._store_dc(technique, times[:keep], ewe[:keep], current[:keep], with_cycle=technique.stem != "ocv")
        self.sampled = times[keep - 1]
        return None if hit is None else float(times[hit])

    def _limit_index(self, technique: Loaded, ewe: np.ndarray, current: np.ndarray) -> int | None:
        """Return the first sample at which the step's Test1..3 hold, or None."""
        if technique.stem not in LIMITED:
            return None
        result = None
        for n in (1, 2, 3):
            config = technique.get(f"Test{n}_Config", self.step)
            if not config & 1:
                break
            variable = current if config >> 5 == 3 else ewe
            value = technique.get(f"Test{n}_Value", self.step)
            test = variable >= value if config >> 2 & 1 else variable <= value
            result = test if result is None else (result & test if config >> 1 & 1 else result | test)
        if result is None or not result.any():
            return None
        return int(np.argmax(result))

    def _record_sweep(self, technique: Loaded, until: float) -> None:
        """Record the DC level (process 0) and the frequencies finished (process 1) up to ``until``."""
        times = self._grid(technique.get("Record_every_dT") or 1.0, until)
        bias = technique.get("Initial_Current_step") if technique.stem == "geis" else 0.0
        if len(times):
            ewe = self.cell.galvanostatic(times, bias)
            current = bias + self.cell.rng.normal(0, self.cell.params.current_noise, len(times))
            self._store_dc(technique, times, ewe, current, with_cycle=False)
            self.sampled = times[-1]
        done = int(np.searchsorted(self.point_times, until, side="right"))
        if done > self.points_done:
            self._store_points(technique, slice(self.points_done, done), bias)
            self.points_done = done

    # ---- recording -----------------------------------------------------------------------------
    def _store_dc(self, technique: Loaded, times, ewe, current, with_cycle: bool) -> None:
        words = dc_records(self.board_type, technique.stem, times - self.tech_start, technique.timebase, ewe,
                           current, self.cycle if with_cycle else None)
        self._write(technique, 0, words)
        self.latest = (float(ewe[-1]), float(current[-1]) if technique.stem != "ocv" else 0.0)

    def _store_points(self, technique: Loaded, points: slice, bias: float) -> None:
        z = self.impedance[points]
        geis = technique.stem == "geis"
        amplitude = technique.get("Amplitude_Current" if geis else "Amplitude_Voltage")
        abs_current = np.full(len(z), amplitude) if geis else amplitude / np.abs(z)
        ewe, current = self.latest
        words = sweep_records(self.board_type, self.frequencies[points], z, abs_current, ewe,
                              bias if geis else current, self.point_times[points] - self.tech_start,
                              technique.get("I_Range"))
        self._write(technique, 1, words)

    def _write(self, technique: Loaded, process: int, words: np.ndarray) -> None:
        start = self.tech_start - (self.t0 or 0.0)
        self.memory.write(Chunk(self.index, technique.technique_id, process, self.loop_number, start,
                                technique.timebase, np.ascontiguousarray(words)))
