"""Fixtures shared by the CLI, report and export tests: one short plating experiment, stored once."""

import contextlib
import io
import os
import tempfile
from pathlib import Path

import h5py
import pytest

from labctl.cli import main
from labctl.storage import Storage

CONFIGS = Path(__file__).resolve().parents[1] / "configs"

# A short version of the overnight experiment: an hour of plating, a spectrum every 20 min.
SHORT_EXPERIMENT = f"""\
name: cli-test
lab: {CONFIGS / "lab-sim.yaml"}
cell:
  id: LLZTO-CLI-1
  kind: symmetric
  thickness: 1.2 mm
  electrode_diameter: 2 mm
steps:
  - plan: set_temperature
    temperature: 30 degC
  - plan: set_pressure           # without it the lithiophobic cell shorts within minutes
    pressure: 5 MPa
  - plan: rest
    duration: 10 min
  - plan: plate
    current_density: 0.5 mA/cm^2
    geis_interval: 20 min
    geis_f_min: 1 Hz
    max_duration: 1 h
"""


def pytest_collection_modifyitems(items):
    """Start the long tests first, those given a timeout above the default, so that with pytest-xdist
    (``make test`` runs ``-n auto``) none of them is left running alone at the end."""
    items.sort(key=lambda item: -max((float(m.args[0] if m.args else m.kwargs["timeout"])
                                      for m in item.iter_markers("timeout")), default=0.0))


@pytest.fixture(scope="session", autouse=True)
def private_temp_dir(tmp_path_factory):
    """Point the temporary directory (TMPDIR, for child processes too) into this session's own folder.

    Machine-wide paths under it, such as a real lab's default instrument locks (/tmp/labctl-locks),
    are then private to this test process: two pytest-xdist workers, or two test runs on one
    machine, do not take each other's locks.
    """
    private = tmp_path_factory.getbasetemp() / "tmp"
    private.mkdir(exist_ok=True)
    saved = os.environ.get("TMPDIR"), tempfile.tempdir
    os.environ["TMPDIR"], tempfile.tempdir = str(private), str(private)
    yield private
    if saved[0] is None:
        os.environ.pop("TMPDIR", None)
    else:
        os.environ["TMPDIR"] = saved[0]
    tempfile.tempdir = saved[1]


@pytest.fixture(scope="session")
def short_experiment() -> str:
    """The text of the short experiment file (its lab is configs/lab-sim.yaml, by absolute path)."""
    return SHORT_EXPERIMENT


@pytest.fixture(scope="session")
def stored(tmp_path_factory):
    """Run the short experiment once through ``labctl run``; return (data dir, what it printed)."""
    folder = tmp_path_factory.mktemp("cli")
    experiment = folder / "short.yaml"
    experiment.write_text(SHORT_EXPERIMENT)
    data_dir = folder / "data"
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = main(["run", str(experiment), "--data-dir", str(data_dir)])
    assert code == 0, buffer.getvalue()
    return data_dir, buffer.getvalue()


@pytest.fixture(scope="session")
def plating_run(stored):
    """Return (data dir, plate run uid) of the short experiment."""
    data_dir, out = stored
    return data_dir, next(line.split()[0] for line in out.splitlines() if " plate " in line)


class StoredRun:
    """A run as databroker hands it out (start, stop, streams by name with ``read()``), from Datasets."""

    def __init__(self, start: dict, stop: dict, streams: dict, metadata: dict | None = None):
        self.start, self.stop, self.streams = start, stop, streams
        self.metadata = metadata or {}  # stream name -> its node's metadata (data_keys with units)

    def __iter__(self):
        return iter(self.streams)

    def __getitem__(self, name):
        return type("Stream", (), {"read": lambda _self: self.streams[name],
                                   "metadata": self.metadata.get(name, {})})()


@pytest.fixture(scope="session")
def stored_run():
    """Return the :class:`StoredRun` class, to build runs from Datasets without a server."""
    return StoredRun


@pytest.fixture(scope="session")
def plate(plating_run):
    """Return the stored plating run read back once, as a :class:`StoredRun` (no server kept open)."""
    data_dir, uid = plating_run
    with Storage.open(data_dir) as storage:
        run = storage.catalog[uid]
        return StoredRun(dict(run.start), dict(run.stop), {name: run[name].read() for name in run},
                         {name: {"data_keys": dict(run[name].metadata["data_keys"])} for name in run})


def _test_lab_config():
    """A real LabConfig, as a lab file gives it: kind ``sim``, so the chamber and rig simulators stay
    in process, with no wire servers to start; no impedance analyser."""
    from labctl.config import LabConfig

    return LabConfig.model_validate({
        "name": "test-lab", "simulated": True, "seed": 1234,
        "instruments": {
            "potentiostat": {"kind": "biologic-sp200", "address": "sim", "channel": 1, "current_limit": "10 mA",
                             "voltage_window": ["-10 V", "10 V"]},
            "chamber": {"kind": "sim", "address": "sim", "temperature_range": ["-40 degC", "200 degC"],
                        "safe_setpoint": "25 degC", "stability_band": "0.5 K", "stability_hold": "5 min"},
            "rig": {"kind": "sim", "address": "sim", "area": "0.785 cm^2", "pressure_range": ["0 MPa", "20 MPa"],
                    "band": "0.1 MPa"},
        },
    })


@pytest.fixture
def lab(tmp_path, lab_config):
    """(simulated lab with the default cell, a RunEngine on its clock, the documents it emits)."""
    from devices.sim.cell import CellParameters
    from labctl.core.clock import VirtualClock
    from labctl.lab import build_simulated_lab
    from labctl.session import make_run_engine

    lab = build_simulated_lab(lab_config, CellParameters(), tmp_path, VirtualClock(start=1e9))
    RE = make_run_engine(lab.clock)
    docs = []
    RE.subscribe(lambda name, doc: docs.append((name, doc)))
    yield lab, RE, docs
    lab.close()


@pytest.fixture(scope="session")
def lab_config():
    """A lab configuration for ``build_simulated_lab`` without a lab file."""
    return _test_lab_config()


def _rows_on_disk(docs, field):
    """The rows of ``field`` the flyer wrote to its HDF5 file, found from the stream resource."""
    resource = next(d for n, d in docs if n == "stream_resource" and d["data_key"].endswith(field))
    with h5py.File(resource["uri"].removeprefix("file://localhost"), "r", swmr=True) as f:
        return f[resource["parameters"]["dataset"]][()]


@pytest.fixture(scope="session")
def rows_on_disk():
    """Return the function reading a flyer's rows back from its HDF5 file."""
    return _rows_on_disk
