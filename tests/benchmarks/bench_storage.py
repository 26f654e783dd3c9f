"""How fast a day of potentiostat data reaches databroker: one event per point vs StreamDatum pages.

A day at 1 Hz is 86,400 rows of (time, Ewe, I, charge). Both ways go through a real RunEngine
and ``Storage`` (journal, then an embedded tiled server); each is timed from the start of the
plan until ``storage.flush()`` says everything is in the server. The server start is not timed.
Both use ``Storage.open(live=False)``: TiledWriter batches rows per stream, as it does by default
(the baseline is then stock bluesky/tiled, ~900 events/s).

(a) one event per row: a readable device read once per row. Only ``EVENT_ROWS`` rows are run
    and the rate extrapolated to the day, because it is slow.
(b) pages of ``PAGE_ROWS`` rows written by ``HDF5StreamWriter`` and collected from a flyer: a
    few StreamDatum documents per page, whatever the number of rows. Target: >= 50,000 rows/s.
(c) the same pages to a data server on another host (``storage.uri``: a ``tiled serve catalog``
    process with a directory of its own, :class:`labctl.dataserver.StandaloneServer`), which
    cannot read the lab's files, so the rows are uploaded (labctl.storage.upload): batched (the
    simulated lab: one upload per field at the stop) and (d) live (real hardware: one upload
    per field per page, as each page is announced).

Run it with ``python tests/benchmarks/bench_storage.py`` or
``python -m pytest -m benchmark -s tests/benchmarks/bench_storage.py``.
"""

from __future__ import annotations

import socket
import sys
import tempfile
import time
from pathlib import Path

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
import numpy as np
import pytest
from bluesky import RunEngine

from labctl.core.assets import FieldSpec, HDF5StreamWriter
from labctl.dataserver import StandaloneServer
from labctl.storage import Storage

DAY_ROWS = 86_400
EVENT_ROWS = 20_000
PAGE_ROWS = 900
TARGET_PAGED_ROWS_PER_S = 50_000
FIELDS = {"time": FieldSpec(units="s"), "Ewe": FieldSpec(units="V"), "I": FieldSpec(units="A"), "charge": FieldSpec(units="C")}


def day_of_rows(rows: int = DAY_ROWS, seed: int = 1) -> dict[str, np.ndarray]:
    """A plausible plating day: 1 Hz, ~50 mV, ~100 uA with noise, charge the running integral."""
    rng = np.random.default_rng(seed)
    current = rng.normal(1e-4, 1e-6, rows)
    return {
        "time": np.arange(rows, dtype=float),
        "Ewe": 0.05 + rng.normal(0, 1e-3, rows),
        "I": current,
        "charge": np.cumsum(current),
    }


# ---- (a) one event per point -----------------------------------------------------------------
class RowSource:
    """A readable device that returns the next row on every ``read()``."""

    parent = None
    name = "potentiostat"

    def __init__(self, rows: dict[str, np.ndarray]):
        self.rows = rows
        self.i = -1

    def describe(self):
        return {
            f"{self.name}_{field}": {"source": "bench", "dtype": "number", "shape": [], "units": spec.units}
            for field, spec in FIELDS.items()
        }

    def read(self):
        self.i += 1
        stamp = float(self.rows["time"][self.i])
        return {f"{self.name}_{field}": {"value": float(self.rows[field][self.i]), "timestamp": stamp} for field in FIELDS}

    def read_configuration(self):
        return {}

    def describe_configuration(self):
        return {}


def events_plan(source: RowSource, n: int):
    @bpp.run_decorator(md={"plan_name": "bench_events"})
    def inner():
        for _ in range(n):
            yield from bps.trigger_and_read([source], name="potentiostat")

    return (yield from inner())


# ---- (b) StreamDatum pages -------------------------------------------------------------------
class _Done:
    done = success = True

    def add_callback(self, callback):
        callback(self)

    def exception(self, timeout=None):
        return None


class PagedPotentiostat:
    """A flyer that hands over one page of rows per ``collect``, through ``HDF5StreamWriter``."""

    parent = None

    def __init__(self, assets_dir: Path, rows: dict[str, np.ndarray], page_rows: int):
        self.name = "potentiostat"
        self.writer = HDF5StreamWriter(assets_dir, self.name, FIELDS)
        self.rows = rows
        self.page_rows = page_rows
        self.offset = 0

    def stage(self):
        self.writer.open("bench")
        return [self]

    def unstage(self):
        self.writer.close()
        return [self]

    def kickoff(self):
        return _Done()

    def complete(self):
        return _Done()

    def describe_collect(self):
        return self.writer.describe()

    def collect_asset_docs(self, index=None):
        stop = min(self.offset + self.page_rows, len(self.rows["time"]))
        page = {field: values[self.offset : stop] for field, values in self.rows.items()}
        self.offset = stop
        yield from self.writer.append(page)

    def get_index(self):
        return self.writer.get_index()


def pages_plan(flyer: PagedPotentiostat, n_pages: int):
    @bpp.stage_decorator([flyer])
    @bpp.run_decorator(md={"plan_name": "bench_pages"})
    def inner():
        yield from bps.declare_stream(flyer, name="potentiostat", collect=True)
        yield from bps.kickoff(flyer, wait=True)
        for _ in range(n_pages):
            yield from bps.collect(flyer, name="potentiostat")
        yield from bps.complete(flyer, wait=True)

    return (yield from inner())


# ---- timing ----------------------------------------------------------------------------------
def timed_run(storage: Storage, plan) -> tuple[str, float]:
    """Run a plan into storage; return (uid, seconds until the server has everything)."""
    RE = RunEngine({})
    RE.subscribe(storage.callback)
    t0 = time.perf_counter()
    (uid,) = RE(plan)
    if not storage.flush(timeout=600):
        raise RuntimeError("storage did not deliver the benchmark run")
    return uid, time.perf_counter() - t0


def run_benchmark(data_dir: Path) -> dict[str, dict[str, float]]:
    """Store the day both ways into one embedded server; return seconds and rows/s of each."""
    rows = day_of_rows()
    storage = Storage.open(data_dir, live=False, writer="benchmark")  # batched writes, as stock TiledWriter does
    try:
        uid_a, seconds_a = timed_run(storage, events_plan(RowSource(rows), EVENT_ROWS))
        n_pages = -(-DAY_ROWS // PAGE_ROWS)
        flyer = PagedPotentiostat(storage.assets_dir, rows, PAGE_ROWS)
        uid_b, seconds_b = timed_run(storage, pages_plan(flyer, n_pages))
        check_stored(storage, uid_a, uid_b, rows)
    finally:
        storage.close()
    rate_a, rate_b = EVENT_ROWS / seconds_a, DAY_ROWS / seconds_b
    return {
        "events": {"rows": EVENT_ROWS, "seconds": seconds_a, "rows_per_s": rate_a, "day_seconds": DAY_ROWS / rate_a},
        "pages": {"rows": DAY_ROWS, "seconds": seconds_b, "rows_per_s": rate_b, "day_seconds": seconds_b},
    }


def run_remote_benchmark(folder: Path) -> dict[str, dict[str, float]]:
    """Store the day as pages into a server on another host, batched and live; seconds and rows/s of each."""
    rows = day_of_rows()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = StandaloneServer(folder / "server-host", port)
    server.start()
    results = {}
    try:
        for mode, live in (("remote batched", False), ("remote live", True)):
            storage = Storage.open(folder / mode.replace(" ", "-"), server.uri, live=live, writer="benchmark")
            try:
                flyer = PagedPotentiostat(storage.assets_dir, rows, PAGE_ROWS)
                uid, seconds = timed_run(storage, pages_plan(flyer, -(-DAY_ROWS // PAGE_ROWS)))
                pages = storage.catalog[uid]["potentiostat"].read()
                for field in FIELDS:
                    np.testing.assert_array_equal(pages[f"potentiostat_{field}"].values, rows[field])
            finally:
                storage.close()
            results[mode] = {"rows": DAY_ROWS, "seconds": seconds, "rows_per_s": DAY_ROWS / seconds,
                             "day_seconds": seconds}
    finally:
        server.close()
    return results


def check_stored(storage: Storage, uid_a: str, uid_b: str, rows: dict[str, np.ndarray]) -> None:
    """Both runs are complete and exact in the server (not timed)."""
    events = storage.catalog[uid_a]["potentiostat"].read()
    np.testing.assert_array_equal(events["potentiostat_Ewe"].values, rows["Ewe"][:EVENT_ROWS])
    pages = storage.catalog[uid_b]["potentiostat"].read()
    for field in FIELDS:
        np.testing.assert_array_equal(pages[f"potentiostat_{field}"].values, rows[field])


def report(results: dict[str, dict[str, float]]) -> str:
    a, b = results["events"], results["pages"]
    return "\n".join(
        [
            f"storing {DAY_ROWS:,} rows x {len(FIELDS)} fields (a day at 1 Hz) through RunEngine -> journal -> tiled",
            f"{'':<34}{'rows timed':>12}{'wall s':>10}{'rows/s':>12}{'day (s)':>10}",
            f"{'(a) one event per point':<34}{a['rows']:>12,}{a['seconds']:>10.2f}{a['rows_per_s']:>12,.0f}{a['day_seconds']:>10.1f}  (extrapolated)",
            f"{'(b) StreamDatum pages of ' + str(PAGE_ROWS):<34}{b['rows']:>12,}{b['seconds']:>10.2f}{b['rows_per_s']:>12,.0f}{b['day_seconds']:>10.1f}",
            f"ratio (b)/(a): {b['rows_per_s'] / a['rows_per_s']:,.0f}x   target for (b): >= {TARGET_PAGED_ROWS_PER_S:,} rows/s",
        ]
        + [f"{('(c) ' if mode.endswith('batched') else '(d) ') + 'remote server, ' + mode.split()[1]:<34}"
           f"{r['rows']:>12,}{r['seconds']:>10.2f}{r['rows_per_s']:>12,.0f}{r['day_seconds']:>10.1f}"
           for mode, r in results.items() if mode.startswith("remote")]
        + ([f"ratio (d)/(c) live/batched to the remote server: {results['remote live']['rows_per_s'] / results['remote batched']['rows_per_s']:.2f}; "
            f"(c)/(b) remote/embedded batched: {results['remote batched']['rows_per_s'] / b['rows_per_s']:.2f}"]
           if "remote live" in results else [])
    )


@pytest.mark.benchmark
@pytest.mark.timeout(900)  # minutes: the one-event-per-point baselines are slow on purpose
def test_storage_benchmark(tmp_path):
    results = {**run_benchmark(tmp_path / "embedded"), **run_remote_benchmark(tmp_path / "remote")}
    print("\n" + report(results))
    assert results["pages"]["rows_per_s"] >= TARGET_PAGED_ROWS_PER_S


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        results = {**run_benchmark(Path(tmp) / "embedded"), **run_remote_benchmark(Path(tmp) / "remote")}
    print(report(results))
    return 0 if results["pages"]["rows_per_s"] >= TARGET_PAGED_ROWS_PER_S else 1


if __name__ == "__main__":
    sys.exit(main())
