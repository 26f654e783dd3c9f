"""A simulated SP-200 behind the real binding, on a virtual clock, for the BioLogic tests."""

import numpy as np
import pytest

from devices.biologic.eclib import EClib
from devices.sim.cell import CellParameters, SimCell
from devices.sim.eclib import SimEClib
from labctl.core.clock import VirtualClock

AREA = CellParameters().electrode_area


@pytest.fixture
def clock():
    return VirtualClock(start=1e9)


@pytest.fixture
def cell(clock):
    params = CellParameters(surface="lithiophilic")
    return SimCell(params, lambda t: 303.15, lambda t: 5e6, np.random.default_rng(0), clock.now())


@pytest.fixture
def sim(clock, cell):
    return SimEClib(clock, cell)


@pytest.fixture
def lib(sim):
    return EClib(sim)


@pytest.fixture
def connected(lib):
    """(lib, device id) with the kernel loaded on channel 0."""
    device_id, _ = lib.connect("USB0")
    lib.load_firmware(device_id, [0])
    return lib, device_id
