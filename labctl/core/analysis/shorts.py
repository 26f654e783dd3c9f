"""Decide, while a cell is plating, that it has short-circuited, and say when and why.

A lithium filament across the pellet is a resistor of a few hundred ohm (the seed paper measured
487 ohm) in parallel with the cell. Whatever the current density, the cell then looks like that
resistor: its voltage collapses to about I x R_short, and its low-frequency impedance to about
R_short. Both rules look for exactly that, relative to the cell's own recent level and through the
resistance it implies, never through an absolute voltage (at 2 mA/cm^2 a shorted 2 mm cell still
sits at ~30 mV, at 0.1 mA/cm^2 at ~1.5 mV):

- voltage: |Ewe - E_ocv| fell by at least ``fall`` below its recent level, and the resistance it
  implies, |Ewe - E_ocv| / |I|, is within the band of a short (at most ``short_resistance``); and it
  stays so for ``hold``;
- impedance: the low-frequency resistance (Z' at the lowest frequency, measured, not fitted) fell
  by at least ``drop`` below the previous spectra's and is within the band of a short.

Where the cell's own resistance comes within 1.5 x the band (a hot lithiophilic cell whose crack
network nears the counter electrode), a short cannot be told from the cell: the rules stay silent
and ``undetermined`` says why. What must not fire, and why it does not: a soft short (a brief, thinner filament of a few kohm)
lowers the voltage and impedance, but to kohm, outside the band, and only for seconds; wetting of a
lithiophobic interface lowers them about fourfold, gradually, to tens of kohm; voiding raises them.
The detector needs nothing from the equivalent-circuit fit.
"""

from __future__ import annotations

from collections import deque
from datetime import datetime, timezone
from statistics import median


def _clock(time: float) -> str:
    return datetime.fromtimestamp(time, timezone.utc).isoformat(timespec="seconds")


class ShortDetector:
    """Follow a plating cell's voltage and spectra; report the short.

    Parameters
    ----------
    current : float
        Magnitude of the applied current, A (the sign does not matter: plate_strip alternates it).
    short_resistance : float
        Upper edge of the band a resistive short puts the cell in, ohm: the voltage over the
        current, or the low-frequency resistance, at or below it. Above the filaments a short
        leaves (a few hundred ohm) and below the kohm of a soft short.
    fall : float
        Fraction by which |Ewe - E_ocv| must have fallen below its recent level (the median of the
        last ``history`` checks before), dimensionless (0.3: to 70 % or less). A short carries that
        share of the current only if the cell's own resistance is above about
        ``fall / (1 - fall)`` x R_short (~200 ohm at 0.3): a hotter, thinner cell hides it.
    hold : float
        How long the voltage must stay in the band, s; 0 decides at the first check that sees it.
    drop : float
        Fraction by which the low-frequency resistance must fall below the larger of the previous
        two spectra's.
    open_circuit_voltage : float
        The cell's voltage without current, V (a tracer's LiMg electrode adds a few mV); the plan
        sets it from its first spectrum, measured at rest.
    history : int
        How many recent checks make the voltage's recent level.
    resolution : float
        Voltage the band allows beyond |I| x ``short_resistance``, V: a few times the noise of one
        sample and of the open-circuit voltage (~0.2 mV rms each), which at 0.05 mA/cm^2 on 2 mm
        electrodes is a third of the ~0.75 mV a short leaves.
    """

    def __init__(self, current: float, short_resistance: float = 600.0, fall: float = 0.3, hold: float = 0.0,
                 drop: float = 0.3, open_circuit_voltage: float = 0.0, history: int = 5,
                 resolution: float = 0.5e-3):
        if current == 0:
            raise ValueError("the short detector needs the applied current, got 0 A")
        self.current, self.short_resistance = abs(current), short_resistance
        self.fall, self.hold, self.drop = fall, hold, drop
        self.open_circuit_voltage, self.resolution = open_circuit_voltage, resolution
        self._recent: deque[float] = deque(maxlen=history)  # |Ewe - E_ocv| at recent checks, V
        self._in_band_since: float | None = None
        self._spectra: list[tuple[float, float]] = []  # (time, low-frequency resistance) of the last two
        self.short_time: float | None = None  # when the short was first seen, s on the session clock
        self.rule: str | None = None  # "voltage" or "impedance"
        # Why a short could not be told from the cell itself (its own resistance near the band), or None.
        self.undetermined: str | None = None

    def _band(self) -> float:
        """Return the band's upper edge as a voltage at this current, V."""
        return self.current * self.short_resistance + self.resolution

    def _near_the_band(self, resistance: float, band: float, what: str) -> bool:
        """Say whether ``resistance`` (ohm) is too near ``band`` (ohm) to tell a short from the cell.

        Within 1.5 x the band a soft short (a few kohm) across the cell could fall into it: the rules
        then stay silent and say why in ``undetermined``, rather than stop on a guess.
        """
        if resistance > 1.5 * band:
            return False
        self.undetermined = self.undetermined or (
            f"{what} ({resistance:.0f} ohm) came within 1.5 x the short band ({band:.0f} ohm): "
            "a short cannot be told from the cell; lower short_resistance"
        )
        return True

    def add_voltage(self, time: float, voltage: float) -> str | None:
        """Take the voltage at one check; return the reason if the cell has shorted, else None.

        Parameters
        ----------
        time : float
            Sample time, s on the session clock.
        voltage : float
            Ewe - Ece, V.
        """
        level = abs(voltage - self.open_circuit_voltage)
        resistance = level / self.current
        fell = bool(self._recent) and level <= (1 - self.fall) * median(self._recent)
        if fell and self._in_band_since is None:
            before = max(list(self._recent)[-2:]) / self.current
            fell = not self._near_the_band(before, self._band() / self.current, "the cell's own resistance")
        in_band = level <= self._band()
        if not (fell or self._in_band_since is not None) or not in_band:
            self._in_band_since = None
            self._recent.append(level)
            return None
        if self._in_band_since is None:
            self._in_band_since = time
        if time - self._in_band_since < self.hold:
            return None
        self.short_time, self.rule = self._in_band_since, "voltage"
        return (
            f"short circuit at {_clock(self._in_band_since)}: |Ewe| = {level * 1e3:.2f} mV, "
            f"{resistance:.0f} ohm at {self.current * 1e3:.3g} mA (short band <= {self.short_resistance:.0f} ohm), "
            f"fallen from {median(self._recent) * 1e3:.1f} mV"
        )

    def add_spectrum(self, time: float, r_low: float) -> str | None:
        """Take one spectrum's low-frequency resistance; return the reason if the cell has shorted.

        Parameters
        ----------
        time : float
            When the spectrum was measured, s on the session clock.
        r_low : float
            Z' at the sweep's lowest frequency, ohm. Measured rather than fitted: after a short the
            interface arc's resistance is in parallel with the filament and no fit can tell it.
        """
        recent, self._spectra = self._spectra, (self._spectra + [(time, r_low)])[-2:]
        if not recent:
            return None
        # The larger of the last two: a soft short during the previous sweep must not hide the drop.
        before, previous = recent[-1][0], max(r for _, r in recent)
        if self._near_the_band(previous, self.short_resistance, "the low-frequency resistance"):
            return None
        if r_low <= (1 - self.drop) * previous and r_low <= self.short_resistance:
            self.short_time, self.rule = time, "impedance"
            return (
                f"short circuit at {_clock(time)} (after {_clock(before)}): impedance dropped from "
                f"{previous:.0f} to {r_low:.0f} ohm (short band <= {self.short_resistance:.0f} ohm)"
            )
        return None
