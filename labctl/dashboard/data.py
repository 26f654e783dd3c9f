"""What the dashboard shows, read from the catalog as JSON-able dicts.

Values labctl could not determine are NaN in the streams and ``None`` here; the page draws them
hollow (raw estimates) or not at all, never as numbers. Times are seconds on the session clock.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from labctl.fits import FIT_PREFIX as FIT
from labctl.fits import row_circuit
from plans.guards import CONDITIONS, DECISIONS, GUARDS

COULOMB_PER_MAH = 3.6
M2_TO_CM2 = 1e4
VOLTAGE_BUCKETS = 1500  # min and max per bucket: a one-sample soft short stays visible
NOTICES = ("experiment_end",)  # alerts sent at every run's end: listed, never the "last alert"
ALERT_LIST = 30  # the newest alerts the overview lists
CONDITION_NAMES = {code: name for name, code in CONDITIONS.items()}
DECISION_NAMES = {code: name for name, code in DECISIONS.items()}


def finite(value: Any) -> float | None:
    """A float for JSON, or None for NaN, inf and missing values (not determined)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def finite_list(values) -> list[float | None]:
    """A flat list for JSON, None where not finite."""
    return [finite(v) for v in np.asarray(values, dtype=float).ravel()]


def min_max_downsample(t: np.ndarray, y: np.ndarray, buckets: int = VOLTAGE_BUCKETS) -> tuple[np.ndarray, np.ndarray]:
    """Keep each bucket's minimum and maximum, in time order: extremes survive, size stays bounded."""
    if len(t) <= 2 * buckets:
        return t, y
    edges = np.linspace(0, len(t), buckets + 1).astype(int)
    keep = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        segment = y[lo:hi]
        finite_part = np.where(np.isfinite(segment), segment, np.nan)
        if np.all(np.isnan(finite_part)):
            continue
        keep.extend(sorted({lo + int(np.nanargmin(finite_part)), lo + int(np.nanargmax(finite_part))}))
    index = np.asarray(keep, dtype=int)
    return t[index], y[index]


def column(run, stream: str, field: str) -> np.ndarray:
    """One field of a stream as floats; empty while a live run has not written it yet."""
    try:
        return np.asarray(run[stream][field].read(), dtype=float)
    except KeyError:
        return np.array([])


def length(run, stream: str, field: str) -> int:
    """How many rows a stream's field has, without reading them."""
    try:
        return int(run[stream][field].shape[0])
    except KeyError:
        return 0


def dataset(run, stream: str):
    """A whole stream (xarray Dataset), or None if absent or not written yet."""
    try:
        return run[stream].read() if stream in run else None
    except KeyError:
        return None


# ---- the lab overview ---------------------------------------------------------------------------
def run_state(metadata: dict) -> str:
    """``running`` while a run has no stop document, else its exit status."""
    stop = metadata.get("stop")
    return "running" if not stop else stop.get("exit_status", "unknown")


class Recorder:
    """Stands in for :class:`labctl.alerts.Alerter`: keeps each alert, stamped with its document's time."""

    def __init__(self, uid: str, rig: str):
        self.uid, self.rig, self.time, self.alerts = uid, rig, None, []

    def send(self, event: str, title: str, body: str) -> None:
        self.alerts.append({"event": event, "title": title, "body": body, "time": self.time,
                            "uid": self.uid, "rig": self.rig})


def run_alerts(run) -> list[dict]:
    """The alerts labctl sends for a run (:class:`labctl.alerts.AlertCallback`), from its stored documents.

    The run's start, its guards stream and its stop go through the same callback a queue's RunEngine
    subscribes, so the dashboard shows what was sent (a short, a guard's pause, resume or end, the
    run's end), whichever kinds that callback makes.
    """
    from labctl.alerts import AlertCallback

    start, stop = run.metadata["start"], run.metadata.get("stop")
    recorder = Recorder(start["uid"], start.get("lab") or "lab")
    callback = AlertCallback(recorder)
    recorder.time = start["time"]
    callback("start", start)
    guards = dataset(run, GUARDS)
    if guards is not None:
        callback("descriptor", {"uid": GUARDS, "name": GUARDS, "run_start": start["uid"]})
        for i in range(len(guards.time)):
            recorder.time = float(guards.time[i])
            callback("event", {"descriptor": GUARDS, "time": recorder.time,
                               "data": {name: guards[name].values[i].item() for name in guards.data_vars}})
    if stop:
        recorder.time = stop["time"]
        callback("stop", stop)
    return recorder.alerts


def newest_alarm(alerts: list[dict]) -> dict | None:
    """The newest alert that is not a routine notice (a run's end), or None."""
    return next((a for a in reversed(alerts) if a["event"] not in NOTICES), None)


def overview(catalog, limit: int = 200, alerts_of=run_alerts) -> dict:
    """One row per rig (the lab named in each start document, newest run) with its last alarm, and the
    newest alerts of the lab (``ALERT_LIST`` of them, newest first). ``alerts_of`` gives a run's alerts
    (the dashboard passes a cached :func:`run_alerts`: an ended run's alerts do not change)."""
    rigs: dict[str, dict] = {}
    alerts: list[dict] = []
    for uid, run in catalog.sort(("start.time", -1)).items()[:limit]:
        rig = run.metadata["start"].get("lab") or "lab"
        found = alerts_of(run)
        alerts.extend(reversed(found))
        if rig not in rigs:
            rigs[rig] = {"rig": rig, **run_row(run), "last_alert": newest_alarm(found)}
        elif rigs[rig]["last_alert"] is None:
            rigs[rig]["last_alert"] = newest_alarm(found)
    return {"rigs": sorted(rigs.values(), key=lambda row: row["rig"]), "alerts": alerts[:ALERT_LIST]}


def rig_without_runs(rig: str) -> dict:
    """The overview's row of a rig that has a queue but no run in the catalog yet."""
    keys = ("uid", "cell", "plan", "step", "experiment", "reason", "started", "elapsed", "plated_capacity",
            "last_r_int", "last_alert")
    return {"rig": rig, **dict.fromkeys(keys), "state": "no run stored"}


def run_row(run) -> dict:
    """The overview's columns for one run."""
    start, stop = run.metadata["start"], run.metadata.get("stop") or {}
    cell = start.get("cell") if isinstance(start.get("cell"), dict) else {}
    last = stop.get("time") or last_event_time(run) or start["time"]
    return {
        "uid": start["uid"], "cell": cell.get("id"), "plan": start.get("plan_name"),
        "step": start.get("step_label"), "experiment": start.get("experiment"),
        "state": run_state(run.metadata), "reason": stop.get("reason"),
        "started": start["time"], "elapsed": last - start["time"],
        "plated_capacity": plated_capacity(run, cell), "last_r_int": last_interface_asr(run, cell),
    }


def last_event_time(run) -> float | None:
    """The newest row's time of a run, on the session clock, or None before any."""
    for stream, field in (("potentiostat", "potentiostat_time"), ("primary", "time"), ("environment", "time")):
        times = column(run, stream, field)
        if len(times):
            return float(times[-1])
    return None


def area_cm2(cell: dict) -> float | None:
    """The cell's electrode area in cm^2, from its start document (m^2)."""
    area = finite(cell.get("electrode_area"))
    return None if not area else area * M2_TO_CM2


def plated_capacity(run, cell: dict) -> float | None:
    """mAh/cm^2 passed so far, from the potentiostat's cumulative charge."""
    area = area_cm2(cell)
    charge = column(run, "potentiostat", "potentiostat_charge")
    if area is None:
        return None
    return finite(abs(charge[-1]) / COULOMB_PER_MAH / area) if len(charge) else None


def last_interface_asr(run, cell: dict) -> float | None:
    """The newest determined interface resistance (ohm cm^2), or None."""
    values = column(run, "impedance_fit", FIT + "asr_interface")
    determined = values[np.isfinite(values)]
    return finite(determined[-1]) if len(determined) else None


# ---- one run ----------------------------------------------------------------------------------
def run_detail(run) -> dict:
    """Everything the run page draws."""
    start = run.metadata["start"]
    cell = start.get("cell") if isinstance(start.get("cell"), dict) else {}
    return {
        **run_row(run), "t0": start["time"], "short": short_of(run),
        "voltage": voltage(run), "spectra": spectra(run), "resistances": resistances(run, cell),
        "guards": guard_decisions(run),
    }


def short_of(run) -> dict | None:
    """When (s after the start) and at what capacity (mAh/cm^2) the cell shorted, from the result."""
    result = (run.metadata.get("stop") or {}).get("result") or {}
    if result.get("ended_by") != "short":
        return None
    capacity = finite(result.get("capacity_at_short"))  # C/m^2, as every stored value is SI
    return {"time": finite(result.get("time_to_short")),
            "capacity": None if capacity is None else capacity / COULOMB_PER_MAH / M2_TO_CM2,
            "reason": result.get("reason")}


def voltage(run) -> dict:
    """Ewe against time since the start (s), min/max downsampled."""
    t = column(run, "potentiostat", "potentiostat_time")
    ewe = column(run, "potentiostat", "potentiostat_Ewe")
    samples = min(len(t), len(ewe))  # a live run's columns may be a page apart
    t, ewe = min_max_downsample(t[:samples] - run.metadata["start"]["time"], ewe[:samples])
    return {"time": finite_list(t), "ewe": finite_list(ewe), "samples": samples}


def spectra(run) -> list[dict]:
    """Each spectrum with its fitted curve (from the stored circuit and parameters) and DRT."""
    sweeps, fits = dataset(run, "impedance"), dataset(run, "impedance_fit")
    if sweeps is None:
        return []
    t0 = run.metadata["start"]["time"]
    out = []
    for i in range(len(sweeps.time)):
        f = np.asarray(sweeps["potentiostat_eis_frequency"][i], dtype=float)
        z = np.asarray(sweeps["potentiostat_eis_z_real"][i]) + 1j * np.asarray(sweeps["potentiostat_eis_z_imag"][i])
        item = {"time": finite(float(sweeps.time[i]) - t0), "frequency": finite_list(f),
                "z_real": finite_list(z.real), "minus_z_imag": finite_list(-z.imag)}
        if fits is not None and i < len(fits.time):
            item.update(fitted(fits, i, f))
        out.append(item)
    return out


def fitted(fits, i: int, f: np.ndarray) -> dict:
    """One fit's curve (200 points over the spectrum's range) and its DRT."""
    circuit = row_circuit(fits, i)
    params = [float(fits[FIT + name][i]) for name in circuit.parameters]
    item: dict = {"fit_success": bool(fits[FIT + "success"][i]) if FIT + "success" in fits else None}
    if all(map(math.isfinite, params)):
        grid = np.geomspace(f.max(), f.min(), 200)
        curve = circuit.impedance(params, grid)
        item.update(fit_z_real=finite_list(curve.real), fit_minus_z_imag=finite_list(-curve.imag))
    if FIT + "drt_tau" in fits:
        item.update(drt_tau=finite_list(fits[FIT + "drt_tau"][i]),
                    drt_resistance=finite_list(fits[FIT + "drt_resistance"][i]))
    return item


def resistances(run, cell: dict) -> dict:
    """R_bulk and R_int (ohm cm^2, 1 sigma) against time and capacity; None where not determined."""
    fits = dataset(run, "impedance_fit")
    if fits is None:
        return {}
    t = np.asarray(fits.time, dtype=float) - run.metadata["start"]["time"]
    out = {"time": finite_list(t), "capacity": capacity_at(run, cell, np.asarray(fits.time, dtype=float))}
    for role in ("bulk", "interface", "short"):
        for suffix in ("", "_err"):
            key = f"{FIT}asr_{role}{suffix}"
            out[f"{role}{suffix}"] = finite_list(fits[key]) if key in fits else [None] * len(t)
    return out


def capacity_at(run, cell: dict, times: np.ndarray) -> list[float | None]:
    """The capacity plated (mAh/cm^2) by each of ``times``, from the cumulative charge."""
    area = area_cm2(cell)
    t = column(run, "potentiostat", "potentiostat_time")
    charge = np.abs(column(run, "potentiostat", "potentiostat_charge"))
    samples = min(len(t), len(charge))
    if area is None or not samples:
        return [None] * len(times)
    return finite_list(np.interp(times, t[:samples], charge[:samples]) / COULOMB_PER_MAH / area)


def guard_decisions(run) -> list[dict]:
    """The guards stream in words: when, which condition, its value, what was decided."""
    data = dataset(run, GUARDS)
    if data is None:
        return []
    field = {name.rsplit("_", 1)[-1]: name for name in data.data_vars}
    t0 = run.metadata["start"]["time"]
    return [{"time": finite(float(data.time[i]) - t0),
             "condition": CONDITION_NAMES.get(int(data[field["condition"]][i]), "?"),
             "value": finite(data[field["value"]][i]),
             "decision": DECISION_NAMES.get(int(data[field["decision"]][i]), "?")}
            for i in range(len(data.time))]
