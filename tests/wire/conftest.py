"""Fixtures for the wire tests: a virtual clock, the simulators, and their servers on loopback."""

import threading

import numpy as np
import pytest

from devices.sim.chamber import SimChamber
from devices.sim.rig import SimRig
from devices.sim.wire import ModbusChamberServer, RigLineServer
from labctl.core.clock import VirtualClock

SERVER_THREADS = ("modbus-", "rig-line-server", "link-fault-proxy")


@pytest.fixture(autouse=True)
def no_server_left_running():
    """Fail a test that leaves a simulator server thread it started running."""
    before = set(threading.enumerate())
    yield
    alive = [t.name for t in set(threading.enumerate()) - before if t.name.startswith(SERVER_THREADS)]
    assert not alive, f"server threads left running: {alive}"


@pytest.fixture
def clock():
    return VirtualClock(start=0.0)


@pytest.fixture
def chamber_sim(clock):
    return SimChamber(clock, rng=np.random.default_rng(0))


@pytest.fixture
def rig_sim(clock):
    return SimRig(clock, lambda t: 303.15, rng=np.random.default_rng(0))


@pytest.fixture
def sleeps():
    """A stand-in for time.sleep that records the backoff instead of waiting."""
    return []


@pytest.fixture
def eurotherm_server(chamber_sim):
    with ModbusChamberServer(chamber_sim, "eurotherm-3200") as server:
        yield server


@pytest.fixture
def rig_server(rig_sim):
    with RigLineServer(rig_sim) as server:
        yield server
