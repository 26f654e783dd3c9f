"""A live figure of a running experiment, drawn from its documents as they arrive.

Three panels, as the seed paper's figure 1 but while the cell plates: the cell voltage against
time, the latest impedance spectrum (Nyquist) with its fitted equivalent circuit, and the fitted
bulk and interface resistances against time. When a run ends on a short circuit the time of the
short is marked. Everything is read from the documents, so the figure shows what storage gets:

- the voltage from the potentiostat's StreamResource/StreamDatum pages, read from the HDF5 file the
  channel writes (a page every ``page_interval``: 15 min by default while plating), kept as each
  minute's lowest and highest value: a week at 1 Hz is 20,000 points instead of 600,000, and a
  soft short of a few seconds still shows;
- the spectra from the ``impedance`` stream's events and their fits from ``impedance_fit``'s.

Threads: the RunEngine calls its subscribers on its own event-loop thread, and a GUI may only be
drawn on the main thread. bluesky solves this for Qt, and only for Qt: while a plan runs, the
RunEngine's default ``during_task`` runs the Qt event loop on the main thread, and a
:class:`~bluesky.callbacks.mpl_plotting.QtAwareCallback` hands each document over to it. So a live
window needs a display and a Qt binding (PyQt6, PySide6, PyQt5 or PySide2):
:func:`display_available` says whether both are there, and :func:`live_plot_callback` switches
matplotlib to QtAgg and returns the callback. With another backend (Agg in the tests) each document
is drawn on the thread it arrives on.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
from urllib.parse import urlparse

import h5py
import numpy as np
from bluesky.callbacks.core import make_class_safe
from bluesky.callbacks.mpl_plotting import QtAwareCallback

from labctl.core.errors import LabctlError
from labctl.plots import FIT_PREFIX, IMPEDANCE, IMPEDANCE_FIT, circuit_of, mark_short, short_time, spectrum_field

logger = logging.getLogger(__name__)

QT_BINDINGS = ("PyQt6", "PySide6", "PyQt5", "PySide2")  # what matplotlib's QtAgg can use
TIME_KEY, VOLTAGE_KEY = "potentiostat_time", "potentiostat_Ewe"
VOLTAGE_BIN = 60.0  # s: the voltage is drawn as each bin's minimum and maximum
ROLES = {"bulk": ("R$_{bulk}$", "tab:blue"), "interface": ("R$_{int}$", "tab:red")}


def display_available() -> bool:
    """Return True when a live window can be shown: a display to show it on and a Qt binding."""
    on_screen = sys.platform in ("darwin", "win32") or bool(
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return on_screen and any(importlib.util.find_spec(name) is not None for name in QT_BINDINGS)


def live_plot_callback() -> "LivePlatingFigure":
    """Return a :class:`LivePlatingFigure` that draws in a window, for ``RE.subscribe``.

    Switches matplotlib to QtAgg (closing figures open in another backend) and to interactive
    mode. Call it on the main thread, before the plan runs: bluesky sets up its hand-over to the
    Qt thread there.

    Raises
    ------
    LabctlError
        If there is no display or no Qt binding (see :func:`display_available`), or matplotlib
        cannot open a window on the display named.
    """
    if not display_available():
        raise LabctlError("no live plot: it needs a display (DISPLAY or WAYLAND_DISPLAY on Linux) and a Qt "
                          f"binding for matplotlib (pip install PyQt6; tried {', '.join(QT_BINDINGS)})")
    import matplotlib
    import matplotlib.pyplot as plt

    if "qt" not in matplotlib.get_backend().lower():
        try:
            plt.switch_backend("QtAgg")
        except ImportError as err:  # e.g. DISPLAY names an X server that is gone
            raise LabctlError(f"no live plot: matplotlib cannot open a Qt window here ({err})") from err
    plt.ion()
    return LivePlatingFigure()


@make_class_safe(logger=logger)  # a plotting error is logged, never allowed to stop a plating run
class LivePlatingFigure(QtAwareCallback):
    """Voltage, latest Nyquist spectrum with its fit, and R_bulk/R_int against time, live.

    One figure (a pyplot window), created at the first data of a run and cleared at the next
    run's; a closed window is opened again by the next run. Time is in hours from the run's start
    on the session clock (the start document's ``clock_time``, else the first data).

    Parameters
    ----------
    use_teleporter : bool, optional
        Hand documents over to the Qt main thread; by default when matplotlib's backend is Qt.
    """

    def __init__(self, *, use_teleporter: bool | None = None):
        super().__init__(use_teleporter=use_teleporter)
        self.figure = None
        self.panels = None  # name -> Axes, for the current run
        self.artists = {}  # name -> Line2D, for the current run
        self._clear_run({})

    # ---- documents -------------------------------------------------------------------------
    def start(self, doc):
        self._clear_run(doc)

    def descriptor(self, doc):
        self._streams[doc["uid"]] = doc["name"]

    def stream_resource(self, doc):
        if doc["data_key"] in (TIME_KEY, VOLTAGE_KEY):
            self._resources[doc["uid"]] = doc
            self._resource_of[doc["data_key"]] = doc

    def stream_datum(self, doc):
        resource = self._resources.get(doc["stream_resource"])
        if resource is None or resource["data_key"] != VOLTAGE_KEY or TIME_KEY not in self._resource_of:
            return  # one page per field arrives: draw on the voltage's, reading the time beside it
        rows = slice(doc["indices"]["start"], doc["indices"]["stop"])
        self._voltage.add(_read_rows(self._resource_of[TIME_KEY], rows), _read_rows(resource, rows))
        times, volts = self._voltage.line()
        self._set("voltage", self._hours(times), volts * 1e3)
        self._redraw()

    def event(self, doc):
        stream = self._streams.get(doc["descriptor"])
        if stream == IMPEDANCE:
            self._spectrum(doc["data"])
        elif stream == IMPEDANCE_FIT:
            self._fit(doc)

    def stop(self, doc):
        short = short_time(doc)
        if short is not None and self.panels is not None:
            for name in ("voltage", "resistance"):
                mark_short(self.panels[name], self._hours(short))
                self.panels[name].legend(loc="best", fontsize=8)
            self._redraw()

    # ---- the panels ------------------------------------------------------------------------
    def _spectrum(self, data):
        frequency = spectrum_field(data, "frequency")
        z = spectrum_field(data, "z_real") + 1j * spectrum_field(data, "z_imag")
        self._latest = frequency, self._hours(float(spectrum_field(data, "sweep_start")))
        self._set("measured", z.real / 1e3, -z.imag / 1e3)
        self._set("fitted", [], [])  # until this spectrum's fit arrives
        self.panels["nyquist"].set_title(f"spectrum at {self._latest[1]:.2f} h")
        self._redraw()

    def _fit(self, doc):
        data = doc["data"]
        circuit = circuit_of(data)
        if circuit is not None and self._latest is not None:
            frequency = self._latest[0]
            params = [data[FIT_PREFIX + name] for name in circuit.parameters]
            z = circuit.impedance(params, np.geomspace(frequency.max(), frequency.min(), 200))
            self._set("fitted", z.real / 1e3, -z.imag / 1e3)
        # the fit's timestamps are the spectrum's start on the session clock (its event time is not)
        time = self._hours(next(iter(doc["timestamps"].values())))
        for role in ROLES:
            if FIT_PREFIX + f"asr_{role}" in data:
                self._resistances[role].append((time, data[FIT_PREFIX + f"asr_{role}"]))
                self._set(role, *zip(*self._resistances[role]))
        self._redraw()

    def _set(self, name, x, y):
        """Set one artist's data and rescale its axes to it."""
        if self.panels is None:
            self._open_panels()
        self.artists[name].set_data(x, y)
        ax = self.artists[name].axes
        ax.relim()
        ax.autoscale_view()

    def _redraw(self):
        """Ask for a redraw, done when the GUI is idle; only in interactive mode, as pyplot does (a
        non-interactive canvas would render the whole figure at once, for nobody to see)."""
        import matplotlib

        if self.figure is not None and matplotlib.is_interactive():
            self.figure.canvas.draw_idle()

    def _open_panels(self):
        import matplotlib.pyplot as plt

        if self.figure is None or not plt.fignum_exists(self.figure.number):
            self.figure = plt.figure(figsize=(11, 8), layout="constrained")
        self.figure.clear()
        self.panels = self.figure.subplot_mosaic([["voltage", "voltage"], ["nyquist", "resistance"]])
        voltage, nyquist, resistance = (self.panels[name] for name in ("voltage", "nyquist", "resistance"))
        (self.artists["voltage"],) = voltage.plot([], [], lw=0.8, color="k")
        voltage.set(xlabel="time / h", ylabel="Ewe - Ece / mV", title="voltage")
        (self.artists["measured"],) = nyquist.plot([], [], "o", ms=3, mfc="none", color="tab:blue", label="measured")
        (self.artists["fitted"],) = nyquist.plot([], [], "-", color="tab:orange", label="fit")
        nyquist.set(xlabel="Z' / kohm", ylabel="-Z'' / kohm", title="spectrum")
        nyquist.set_aspect("equal", adjustable="datalim")
        nyquist.legend(loc="upper left", fontsize=8)
        for role, (label, colour) in ROLES.items():
            (self.artists[role],) = resistance.plot([], [], "o-", ms=4, color=colour, label=label)
        resistance.set(xlabel="time / h", ylabel="area-specific resistance / Ω cm$^2$", yscale="log",
                       title="fitted resistances")
        resistance.legend(loc="best", fontsize=8)
        self.figure.suptitle(self._title)

    # ---- state of one run ------------------------------------------------------------------
    def _clear_run(self, start: dict):
        self.panels, self.artists = None, {}
        self._t0 = start.get("clock_time")
        cell = start.get("cell", {}).get("id")
        parts = [start.get("plan_name", "run"), f"cell {cell}" if cell else None, start.get("uid", "")[:8]]
        self._title = " — ".join(part for part in parts if part)
        self._streams: dict[str, str] = {}  # descriptor uid -> stream name
        self._resources: dict[str, dict] = {}  # stream resource uid -> document, for time and voltage
        self._resource_of: dict[str, dict] = {}  # data key -> its stream resource
        self._voltage = Envelope()
        self._resistances = {role: [] for role in ROLES}  # role -> [(hours, ohm cm^2)]
        self._latest = None  # (frequencies, hours) of the latest spectrum

    def _hours(self, time):
        if self._t0 is None:  # a run started by hand carries no clock_time: start at its first data
            self._t0 = float(np.min(time))
        return (np.asarray(time, dtype=float) - self._t0) / 3600


class Envelope:
    """Samples kept as each ``width`` s's first time, lowest and highest value, page after page.

    Parameters
    ----------
    width : float
        Bin width, s; bins start at whole multiples of it, so a bin split between two pages is one.
    """

    def __init__(self, width: float = VOLTAGE_BIN):
        self.width = width
        self.bins = np.zeros((0, 4))  # one row per bin: its number, first time, lowest, highest value

    def add(self, time: np.ndarray, value: np.ndarray) -> None:
        """Take a page of samples, in time order, later than those already taken."""
        if len(time) == 0:
            return
        number = np.floor(time / self.width)
        first = np.flatnonzero(np.r_[True, number[1:] != number[:-1]])
        page = np.column_stack([number[first], time[first], np.minimum.reduceat(value, first),
                                np.maximum.reduceat(value, first)])
        if len(self.bins) and self.bins[-1, 0] == page[0, 0]:  # the bin the last page ended in goes on
            last = self.bins[-1]
            page[0] = last[0], last[1], min(last[2], page[0, 2]), max(last[3], page[0, 3])
            self.bins = self.bins[:-1]
        self.bins = np.vstack([self.bins, page])

    def line(self) -> tuple[np.ndarray, np.ndarray]:
        """Return (time, value) to draw: two points per bin at its first time, its lowest then highest."""
        return np.repeat(self.bins[:, 1], 2), self.bins[:, 2:].ravel()


def _read_rows(resource: dict, rows: slice) -> np.ndarray:
    """Read ``rows`` of one field from the file a stream resource points to (the writer keeps it open:
    SWMR lets it be read meanwhile)."""
    with h5py.File(urlparse(resource["uri"]).path, "r", swmr=True) as file:
        return file[resource["parameters"]["dataset"]][rows]
