"""Decide, while a cell is plating, that it has short-circuited, and say when and why.

A lithium filament across the pellet is a resistor of a few hundred ohm (the seed paper measured
487 ohm) in parallel with the cell. Whatever the current density, the cell then looks like that
resistor: its voltage collapses to about I x R_short, and its low-frequency impedance to about
R_short. Both rules look for exactly that, relative to the cell's own recent level and through the
resistance it implies, never through an absolute voltage (at 2 mA/cm^2 a shorted 2 mm cell still
sits at ~30 mV, at 0.1 mA/cm^2 at ~1.5 mV):

- voltage: |Ewe - E_ocv| fell to at most ``1 - fall`` of its recent level, and the resistance it
  implies, |Ewe - E_ocv| / |I|, is within the band of a short (at most ``short_resistance``); and it
  stays so for ``hold``;
- impedance: the low-frequency resistance (Z' at the lowest frequency, measured, not fitted) fell
  by at least ``drop`` since the previous spectrum and is within the band of a short.

What must not fire, and why it does not: a soft short (a brief, thinner filament of a few kohm)
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
        last ``history`` checks before), dimensionless (0.5: to half or less).
    hold : float
        How long the voltage must stay in the band, s; 0 decides at the first check that sees it.
    drop : float
        Fraction by which the low-frequency resistance must fall from one spectrum to the next.
    open_circuit_voltage : float
        The cell's voltage without current, V (a tracer's LiMg electrode adds a few mV); the plan
        sets it from its first spectrum, measured at rest.
    history : int
        How many recent checks make the voltage's recent level.
    """

    def __init__(self, current: float, short_resistance: float = 600.0, fall: float = 0.5, hold: float = 0.0,
                 drop: float = 0.5, open_circuit_voltage: float = 0.0, history: int = 5):
        if current == 0:
            raise ValueError("the short detector needs the applied current, got 0 A")
        self.current, self.short_resistance = abs(current), short_resistance
        self.fall, self.hold, self.drop = fall, hold, drop
        self.open_circuit_voltage = open_circuit_voltage
        self._recent: deque[float] = deque(maxlen=history)  # |Ewe - E_ocv| at recent checks, V
        self._in_band_since: float | None = None
        self._last_spectrum: tuple[float, float] | None = None  # (time, low-frequency resistance)
        self.short_time: float | None = None  # when the short was first seen, s on the session clock
        self.rule: str | None = None  # "voltage" or "impedance"

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
        if not (fell or self._in_band_since is not None) or resistance > self.short_resistance:
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
        last, self._last_spectrum = self._last_spectrum, (time, r_low)
        if last is None:
            return None
        before, previous = last
        if r_low <= (1 - self.drop) * previous and r_low <= self.short_resistance:
            self.short_time, self.rule = time, "impedance"
            return (
                f"short circuit at {_clock(time)} (after {_clock(before)}): impedance dropped from "
                f"{previous:.0f} to {r_low:.0f} ohm (short band <= {self.short_resistance:.0f} ohm)"
            )
        return None
