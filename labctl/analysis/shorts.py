"""Decide, while a cell is plating, that it has short-circuited, and say when and why.

Two signatures, as the seed paper saw them:

- impedance: the bulk resistance falls as lithium fills the sub-surface cracks, then the whole
  impedance drops at once when a filament bridges the pellet;
- voltage: the cell voltage collapses to I x R_short and stays there.

The impedance rule asks for three things at one spectrum: the low-frequency resistance dropped
suddenly since the previous spectrum; the bulk resistance is below its largest value so far (so the
early fall of a lithiophobic interface as plating wets it, interface only, is not taken for a
short); and the cell voltage under the plating current is collapsed at that moment (so a soft
short, a brief parallel path of a few kohm that happens to coincide with a spectrum, is not taken
for one either: it lowers the impedance too, but not the voltage to I x R_short). The voltage rule
asks for the collapse to last, so soft shorts (brief dips) do not trip it. Either rule is enough.
"""

from __future__ import annotations

from datetime import datetime, timezone


def _clock(time: float) -> str:
    return datetime.fromtimestamp(time, timezone.utc).isoformat(timespec="seconds")


class ShortDetector:
    """Follow a plating cell's spectra and voltage; report the short.

    Parameters
    ----------
    drop : float
        Fraction by which the low-frequency resistance must fall from one spectrum to the next to
        count as the sudden drop, dimensionless (0.5: to half or less).
    bulk_decline : float
        Fraction by which the bulk resistance must be below the largest seen in the run,
        dimensionless (0.2: 20 % lower).
    collapse_voltage : float
        |Ewe| below which the voltage has collapsed, V (YAML ``mV``). Set it above |I| x R_short
        (7.5 mV at 0.5 mA/cm^2 on 2 mm electrodes through 480 ohm) and well below the voltage with
        a soft short of a few kohm across the cell (~40 mV there).
    collapse_hold : float
        How long the voltage must stay collapsed, s; longer than a soft short (tens of s).
    """

    def __init__(self, drop: float = 0.5, bulk_decline: float = 0.2, collapse_voltage: float = 0.01,
                 collapse_hold: float = 60.0):
        self.drop, self.bulk_decline = drop, bulk_decline
        self.collapse_voltage, self.collapse_hold = collapse_voltage, collapse_hold
        self._last: tuple[float, float] | None = None  # (time, low-frequency resistance)
        self._bulk_max = 0.0
        self._collapsed_since: float | None = None

    def add_spectrum(self, time: float, r_total: float, r_bulk: float, voltage: float) -> str | None:
        """Take one fitted spectrum; return the reason if the cell has shorted, else None.

        Parameters
        ----------
        time : float
            When the spectrum was measured, s on the session clock.
        r_total : float
            Low-frequency resistance of the cell, ohm: Z' at the lowest frequency. Measured rather
            than fitted, because after a short the interface arc's own resistance is in parallel
            with the filament and no fit can tell it.
        r_bulk : float
            Fitted bulk resistance, ohm.
        voltage : float
            Cell voltage under the plating current as the spectrum was measured (GEIS DC
            voltage), V.
        """
        last, self._last = self._last, (time, r_total)
        self._bulk_max = max(self._bulk_max, r_bulk)
        if last is None:
            return None
        before, previous = last
        bulk_fall = 1 - r_bulk / self._bulk_max
        collapsed = abs(voltage) < self.collapse_voltage
        if r_total <= (1 - self.drop) * previous and bulk_fall >= self.bulk_decline and collapsed:
            return (
                f"short circuit at {_clock(time)} (after {_clock(before)}): impedance dropped from "
                f"{previous:.0f} to {r_total:.0f} ohm, bulk resistance {100 * bulk_fall:.0f} % below its "
                f"maximum, |Ewe| = {abs(voltage) * 1e3:.2f} mV"
            )
        return None

    def add_voltage(self, time: float, voltage: float) -> str | None:
        """Take one voltage sample; return the reason if it has stayed collapsed, else None.

        Parameters
        ----------
        time : float
            Sample time, s on the session clock.
        voltage : float
            Ewe - Ece, V.
        """
        if abs(voltage) >= self.collapse_voltage:
            self._collapsed_since = None
            return None
        if self._collapsed_since is None:
            self._collapsed_since = time
        if time - self._collapsed_since >= self.collapse_hold:
            return (
                f"short circuit at {_clock(self._collapsed_since)}: |Ewe| = {abs(voltage) * 1e3:.2f} mV, "
                f"below {self.collapse_voltage * 1e3:g} mV for {time - self._collapsed_since:.0f} s"
            )
        return None
