"""``labctl doctor LAB.yaml``: is every instrument of a lab there, and does it agree with the lab file?

For bring-up and for the morning after. Each instrument in turn: connect, read its identity and one
harmless value (chamber process value and setpoint, rig force, potentiostat channel state and
firmware), time the round trips, and compare the lab file's limits with what the instrument
reports where it can. Nothing is written to any instrument: only reads (Modbus function 3, the
rig's ``?`` queries, ``BL_Connect``/``BL_GetChannelInfos``/``BL_GetCurrentValues``), and the
EC-Lab firmware is not loaded (``labctl run`` does that). Simulated instruments are diagnosed
through the same drivers over their simulators, so a simulated or mixed lab answers too.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from labctl.core.clock import VirtualClock, WallClock
from labctl.core.errors import LabctlError

OK, WARN, UNREACHABLE = "ok", "warning", "UNREACHABLE"
DOCTOR_ATTEMPTS = 2  # one retry: a doctor reports a flaky link, it does not ride it out


@dataclass
class Diagnosis:
    """What the doctor found about one instrument."""

    role: str
    where: str
    simulated: bool
    identity: str = ""
    readings: str = ""
    latency: float | None = None  # s, mean round trip of the reads
    notes: list[str] = field(default_factory=list)  # lab-file limits the instrument disagrees with
    error: str | None = None

    @property
    def verdict(self) -> str:
        """Get ``ok``, ``warning`` (reachable, but the lab file and the instrument disagree) or ``UNREACHABLE``."""
        return UNREACHABLE if self.error else WARN if self.notes else OK

    def __str__(self) -> str:
        kind = "simulated" if self.simulated else "real"
        head = f"{self.role:<18} {self.verdict:<11} {kind} at {self.where}"
        if self.error:
            return f"{head}: {self.error}"
        latency = "" if self.latency is None else f"; round trip {self.latency * 1e3:.1f} ms"
        tail = "".join(f"; {note}" for note in self.notes)
        return f"{head}: {self.identity}; {self.readings}{latency}{tail}"


class Timer:
    """Times each read it makes (wall clock: latency is a property of the link, not of the session)."""

    def __init__(self):
        self.times: list[float] = []

    def __call__(self, read: Callable[[], float]):
        began = time.perf_counter()
        value = read()
        self.times.append(time.perf_counter() - began)
        return value

    @property
    def mean(self) -> float | None:
        return float(np.mean(self.times)) if self.times else None


def diagnose(config) -> list[Diagnosis]:
    """Diagnose every instrument of the lab ``config`` (a ``LabConfig``), in turn; write nothing."""
    from labctl.lab import Lab

    clock = VirtualClock() if config.fully_simulated else WallClock()
    lab = Lab(clock, None, None, None, config)  # holds the simulators and loopback servers it needs
    rng = np.random.default_rng(config.seed)
    checks = {"chamber": _chamber, "rig": _rig, "potentiostat": _potentiostat, "impedance_analyser": _analyser}
    found = []
    try:
        for role in ("chamber", "rig", "potentiostat", "impedance_analyser"):
            instrument = getattr(config.instruments, role)
            if instrument is None:
                continue
            diagnosis = Diagnosis(role, instrument.address, config.simulates(role))
            try:
                checks[role](diagnosis, instrument, lab, rng)
            except (LabctlError, OSError) as error:
                diagnosis.error = str(error)
            found.append(diagnosis)
    finally:
        lab.close()
    return found


def _chamber(diagnosis: Diagnosis, config, lab, rng) -> None:
    from devices.chamber.controllers import SETPOINT_LIMITS
    from labctl.lab import chamber_backend

    backend, _ = chamber_backend(config, diagnosis.simulated, lab, rng, time.sleep)
    try:
        if hasattr(backend, "link"):
            backend.link.policy = backend.link.policy.with_attempts(DOCTOR_ATTEMPTS)
        timer = Timer()
        pv, setpoint = timer(backend.read_temperature) - 273.15, timer(lambda: backend.setpoint) - 273.15
        unit = f", Modbus unit {config.unit}" if config.kind != "sim" else ""
        diagnosis.identity = f"{config.kind}{unit}"
        diagnosis.readings = f"PV {pv:.2f} degC, setpoint {setpoint:.2f} degC"
        diagnosis.latency = timer.mean
        low, high = (t - 273.15 for t in config.temperature_range)
        if config.kind != "sim" and (low < SETPOINT_LIMITS[0] or high > SETPOINT_LIMITS[1]):
            diagnosis.notes.append(f"the lab file's range [{low:g}, {high:g}] degC passes the setpoints the driver "
                                   f"writes, [{SETPOINT_LIMITS[0]:g}, {SETPOINT_LIMITS[1]:g}] degC")
        if not low <= setpoint <= high:
            diagnosis.notes.append(f"the controller's setpoint {setpoint:.2f} degC is outside the lab file's range "
                                   f"[{low:g}, {high:g}] degC")
    finally:
        if hasattr(backend, "close"):
            backend.close()


def _rig(diagnosis: Diagnosis, config, lab, rng) -> None:
    from devices.rig.protocol import RATED_FORCE
    from labctl.lab import rig_backend

    backend, _ = rig_backend(config, diagnosis.simulated, lab, rng, lambda t: 298.15, time.sleep)
    try:
        if hasattr(backend, "policy"):
            backend.policy = backend.policy.with_attempts(DOCTOR_ATTEMPTS)
        timer = Timer()
        force = timer(backend.read_force)
        diagnosis.identity = config.kind
        diagnosis.readings = f"force {force:.1f} N ({force / config.area / 1e6:.2f} MPa on {config.area * 1e4:g} cm^2)"
        diagnosis.latency = timer.mean
        allowed = config.pressure_range[1] * config.area
        if allowed > RATED_FORCE:
            diagnosis.notes.append(f"the lab file allows {config.pressure_range[1] / 1e6:g} MPa, {allowed:.0f} N on "
                                   f"its area, above the frame's rated {RATED_FORCE:g} N")
        if force > RATED_FORCE:
            diagnosis.notes.append(f"the load cell reads {force:.0f} N, above the frame's rated {RATED_FORCE:g} N")
    finally:
        if hasattr(backend, "close"):
            backend.close()


def _potentiostat(diagnosis: Diagnosis, config, lab, rng) -> None:
    from devices.biologic import eclib
    from devices.biologic.ecc import E_RANGES, I_RANGES
    from devices.sim.cell import CellParameters, SimCell
    from labctl.lab import simulated_library, vendor_library

    if diagnosis.simulated:
        cell = SimCell(CellParameters(), lambda t: 298.15, lambda t: 0.0, rng, lab.clock.now())
        library = simulated_library(config, lab.clock, cell, lab)
    else:
        library = vendor_library(lab.config)
    timer, channel = Timer(), config.channel - 1
    try:
        device_id, device = timer(lambda: library.connect(config.address))
    except eclib.EClibError as error:
        raise LabctlError(f"BL_Connect to {config.address}: {error}") from None
    try:
        info = timer(lambda: library.channel_info(device_id, channel))
        kernel = info.FirmwareCode == eclib.FIRMWARE_KERNEL  # current values need it; loading it is a write
        values = timer(lambda: library.current_values(device_id, channel)) if kernel else None
    finally:
        library.disconnect(device_id)
    model = {eclib.DEVICE_SP200: "SP-200", eclib.DEVICE_SP300: "SP-300"}.get(device.DeviceCode, f"device code {device.DeviceCode}")
    firmware = "kernel loaded" if kernel else f"firmware code {info.FirmwareCode}, not the kernel (labctl run loads it)"
    state = {eclib.STATE_STOP: "stopped", eclib.STATE_RUN: "RUNNING", eclib.STATE_PAUSE: "paused"}.get(info.State, info.State)
    diagnosis.identity = (f"{model}, firmware {device.FirmwareVersion}, channel {config.channel} board "
                          f"{info.BoardVersion} serial {info.BoardSerialNumber}, {firmware}")
    diagnosis.readings = f"channel {state}" + (f", Ewe {values.Ewe:.4f} V" if values is not None else "")
    diagnosis.latency = timer.mean
    largest = I_RANGES.get(info.MaxIRange)
    if largest is not None and config.current_limit > largest:
        diagnosis.notes.append(f"the lab file's current_limit {config.current_limit * 1e3:g} mA is above the "
                               f"channel's largest range, {largest * 1e3:g} mA")
    if max(abs(v) for v in config.voltage_window) > max(E_RANGES.values()):
        diagnosis.notes.append(f"the lab file's voltage_window passes the channel's +/-{max(E_RANGES.values()):g} V")
    if info.State == eclib.STATE_RUN:
        diagnosis.notes.append("a technique is running on the channel (another program, or a run not stopped)")


def _analyser(diagnosis: Diagnosis, config, lab, rng) -> None:
    from devices.biologic.mtz35 import GENERATOR_LEVEL

    # Always simulated (LabConfig refuses a real one): there is nothing to reach.
    diagnosis.identity = "MTZ-35 (simulated; BioLogic publishes no programming interface for the real one)"
    diagnosis.readings = f"max_amplitude {config.max_amplitude:g} V of the generator's {GENERATOR_LEVEL:g} V"


def doctor(config, write: Callable[[str], None] = print) -> int:
    """Diagnose the lab and print one line per instrument; return 4 if any is unreachable, else 0."""
    source = config.path or config.name
    write(f"lab {config.name!r} ({source}): {len(config.instruments.present())} instruments")
    found = diagnose(config)
    for diagnosis in found:
        write(str(diagnosis))
    return 4 if any(d.verdict == UNREACHABLE for d in found) else 0
