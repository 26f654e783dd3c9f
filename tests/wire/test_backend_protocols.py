"""Every backend, real driver or simulator, has what its device needs (devices.backends); the public names resolve.

The real chamber and rig drivers are checked over loopback against the simulators at the wire, as
in the other wire tests. Member types are the type checker's business; these check the members.
"""

import subprocess
import sys

import numpy as np
import pytest

import devices
from devices.backends import ChamberBackend, ImpedanceBackend, PotentiostatBackend, PressureRigBackend
from devices.biologic.backend import EClibBackend
from devices.biologic.eclib import EClib
from devices.biologic.mtz35 import MTZ35Backend
from devices.chamber.controllers import make_controller
from devices.modbus import ModbusLink
from devices.rig.protocol import RigBackend
from devices.sim.cell import CellParameters, SimCell
from devices.sim.eclib import SimEClib
from devices.sim.mtz35 import SimMTZ35
from devices.sim.wire import ModbusChamberServer

PACKAGES = ["devices", "devices.biologic", "devices.chamber", "devices.rig", "devices.sim"]
# Modules that talk to instruments, or hold what every driver shares: none may pull in the devices' stack.
WIRE_MODULES = ["devices.biologic.eclib", "devices.biologic.ecc", "devices.biologic.data", "devices.biologic.backend",
                "devices.biologic.mtz35", "devices.modbus", "devices.rig.protocol", "devices.chamber.controllers",
                "devices.retry", "devices.errors", "devices.backends"]


@pytest.fixture
def cell(clock):
    return SimCell(CellParameters(), lambda t: 303.15, lambda t: 5e6, np.random.default_rng(0), clock.now())


def test_the_potentiostat_and_analyser_backends_have_what_their_devices_call(clock, cell):
    assert isinstance(EClibBackend(EClib(SimEClib(clock, cell)), clock), PotentiostatBackend)
    assert isinstance(MTZ35Backend(SimMTZ35(clock, cell), clock, max_amplitude=0.1), ImpedanceBackend)


@pytest.mark.parametrize("kind", ["eurotherm-2000", "eurotherm-3200", "watlow-f4t", "binder-mb1", "binder-mb2"])
def test_every_chamber_controller_and_the_simulator_are_chamber_backends(clock, chamber_sim, kind):
    assert isinstance(chamber_sim, ChamberBackend)
    with ModbusChamberServer(chamber_sim, kind) as server:
        controller = make_controller(kind, ModbusLink(server.address))
        try:
            assert isinstance(controller, ChamberBackend)
        finally:
            controller.close()


def test_the_rig_driver_and_the_simulator_are_rig_backends(rig_server, rig_sim, sleeps):
    assert isinstance(rig_sim, PressureRigBackend)
    backend = RigBackend(rig_server.address, area=rig_sim.params.area, sleep=sleeps.append)
    try:
        assert isinstance(backend, PressureRigBackend)
    finally:
        backend.close()


def test_a_backend_without_a_member_is_not_one(chamber_sim):
    class NoSetpoint:
        def read_temperature(self) -> float:
            return 300.0

        def set_setpoint(self, kelvin: float) -> None:
            pass

    assert not isinstance(NoSetpoint(), ChamberBackend)


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_name_of_a_package_resolves_to_its_module(package):
    module = __import__(package, fromlist=["__all__"])
    assert module.__all__ and sorted(dir(module)) == module.__all__
    for name in module.__all__:
        value = getattr(module, name)
        assert value.__name__ == name and value.__module__.startswith("devices.")
    with pytest.raises(AttributeError, match="no attribute 'Nonexistent'"):
        getattr(module, "Nonexistent")


def test_the_wire_drivers_import_without_ophyd_or_bluesky():
    code = (f"import sys\nimport {', '.join(WIRE_MODULES)}\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('ophyd', 'bluesky')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_package_exports_what_the_lab_builds():
    assert {"PotentiostatChannel", "ImpedanceAnalyser", "TemperatureChamber", "StackPressureRig"} <= set(devices.__all__)
