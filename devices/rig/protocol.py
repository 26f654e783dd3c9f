"""The stack-pressure rig's line protocol, its pymeasure driver, and the backend the device uses.

The rig controller: one serial line (RS-232/USB, or a pyserial URL such as ``socket://host:port``),
8N1, ASCII. Commands end with CR (a following LF is ignored); replies end with CR LF. The load-cell
commands follow Mark-10 force gauges (Series 4/5/7 user's guides, "Data communication": ``?``
returns the displayed reading, value and unit, ``*10`` answers an illegal command); the crosshead
and hold-loop commands are the rig firmware's own, in the same style.

=========  =====================  ===============================================================
command    reply                  meaning
=========  =====================  ===============================================================
``?``      ``392.512 N``          load-cell force, compression positive (unit N, lbF or kgF)
``X?``     ``-0.100000 mm``       crosshead position; 0 touches the stack as assembled
``T?``     ``392.5000 N``         force the hold loop keeps
``T <N>``  ``OK``                 set that force, N (0 to the frame's rated force)
``H?``     ``1`` or ``0``         whether the hold loop is on
``H1``     ``OK``                 hold: the firmware's loop moves the crosshead to keep ``T``
``H0``     ``OK``                 stop holding; the crosshead stays where it is
``R``      ``OK``                 stop holding and retract the crosshead clear of the stack
(any)      ``*10``                illegal command
(any)      ``*11``                value out of range
=========  =====================  ===============================================================

Where the closed loop lives: in the rig firmware, not on the host. The firmware samples the load
cell far faster than a serial round trip (it averages 25 readings per 5 s control tick), keeps
holding when the host process is paused, crashes or loses the cable, and costs the host no I/O
while nothing is being recorded. The host sets the target force and switches the loop on or off;
``StackPressureRig`` converts between pressure and force over the configured area.
"""

from __future__ import annotations

import logging
import re
import time
import weakref
from dataclasses import dataclass
from typing import Callable, cast

import serial
from pymeasure.adapters import SerialAdapter
from pymeasure.instruments import Instrument
from pymeasure.instruments.validators import strict_discrete_set, strict_range

from devices.errors import InstrumentLost
from devices.retry import RetryPolicy, retry

log = logging.getLogger(__name__)

NEWTONS_PER = {"N": 1.0, "lbF": 4.4482216152605, "kgF": 9.80665}
METRES_PER = {"mm": 1e-3, "um": 1e-6}
READING = re.compile(r"^\s*([-+]?\d+(?:\.\d*)?)\s+(\S+)\s*$")
ERRORS = {"*10": "illegal command", "*11": "value out of range"}
RATED_FORCE = 5000.0  # N: the frame's rating; the lab file's pressure range is checked by the device


class RigProtocolError(RuntimeError):
    """No reply, or something that is not one (a timeout, a garbled line): worth another try."""


class RigRefused(RigProtocolError):
    """The rig controller answered with an error code: it will not do it, so it is not retried."""


def parse_reading(reply, units: dict[str, float]) -> float:
    """Return the SI value of a ``<value> <unit>`` reply, using ``units`` (unit to SI factor)."""
    if reply in ("", None):
        raise RigProtocolError("no reply (timeout)")
    if reply in ERRORS:
        raise RigRefused(f"controller answered {reply} ({ERRORS[reply]})")
    match = READING.match(str(reply))
    if not match or match.group(2) not in units:
        raise RigProtocolError(f"unexpected reply {reply!r}")
    return float(match.group(1)) * units[match.group(2)]


def newtons(reply) -> float:
    """Return a force reply (``392.512 N``) in N."""
    return parse_reading(reply, NEWTONS_PER)


def metres(reply) -> float:
    """Return a position reply (``-0.100000 mm``) in m."""
    return parse_reading(reply, METRES_PER)


class RigController(Instrument):
    """The stack-pressure rig controller: Mark-10-style load cell, crosshead and hold loop.

    Parameters
    ----------
    adapter : pymeasure adapter
        The line (``RigController.open(url)`` builds one from a pyserial port or URL).
    name : str
        Instrument name, for logs.
    """

    def __init__(self, adapter, name: str = "Stack-pressure rig controller", **kwargs):
        super().__init__(adapter, name, includeSCPI=False, **kwargs)

    @classmethod
    def open(cls, url: str, *, timeout: float = 0.5, baudrate: int = 115200) -> "RigController":
        """Return a controller on the pyserial port or URL ``url`` (``/dev/ttyUSB0``, ``socket://host:port``)."""
        port = serial.serial_for_url(url, timeout=timeout, write_timeout=timeout, baudrate=baudrate)
        return cls(SerialAdapter(port, write_termination="\r", read_termination="\r\n"))

    force = Instrument.measurement(
        "?", "Measure the load-cell force, N (compression positive).", get_process=newtons,
    )
    position = Instrument.measurement(
        "X?", "Measure the crosshead position, m (0 touches the stack as assembled).", get_process=metres,
    )
    target_force = Instrument.control(
        "T?", "T %.4f", "Control the force the hold loop keeps, N.",
        validator=strict_range, values=(0.0, RATED_FORCE), get_process=newtons, check_set_errors=True,
    )
    holding = Instrument.control(
        "H?", "H%d", "Control the hold loop (True holds the target force).",
        validator=strict_discrete_set, values={True: 1, False: 0}, map_values=True, check_set_errors=True,
    )

    def release(self) -> None:
        """Stop holding and retract the crosshead clear of the stack."""
        self.write("R")
        self.check_set_errors()

    def check_set_errors(self) -> list:
        """Read the acknowledgement of a command; raise ``RigProtocolError`` unless it is ``OK``."""
        reply = self.read().strip()
        if reply in ERRORS:
            raise RigRefused(f"controller answered {reply} ({ERRORS[reply]})")
        if reply != "OK":
            raise RigProtocolError(f"command not acknowledged: {reply!r}")
        return []


def close_port(line: dict) -> None:
    """Close the pyserial port in ``line["port"]``."""
    port = line["port"]
    sock = getattr(port, "_socket", None)
    if sock is None:
        port.close()
        return
    # pyserial's socket:// close() leaks the socket when the peer has already dropped it (its
    # shutdown() fails first) and then sleeps 0.3 s; close the socket directly instead.
    sock.close()
    port._socket, port.is_open = None, False


@dataclass(frozen=True)
class RigSettings:
    """What the device reads from its backend's ``params``: the pressed area, m^2."""

    area: float


class RigBackend:
    """``StackPressureRig``'s backend over a :class:`RigController`: pressures in, forces on the wire.

    Parameters
    ----------
    url : str
        pyserial port or URL of the rig controller.
    area : float
        Pressed area, m^2 (the lab file's ``area``).
    timeout : float
        Seconds to wait for each reply.
    attempts : int
        Tries per exchange; a failed one reopens the line after a backoff that doubles each time.
    backoff, max_backoff : float
        First and longest wait between attempts, s.
    sleep : callable
        How to wait between attempts (``time.sleep``; tests pass a recorder).
    name : str
        The instrument's role, for error messages.
    """

    def __init__(self, url: str, *, area: float, timeout: float = 0.5, attempts: int = 4,
                 backoff: float = 0.05, max_backoff: float = 2.0, sleep: Callable[[float], None] = time.sleep,
                 name: str = "rig controller"):
        self.url, self.timeout, self.name = url, timeout, name
        self.params = RigSettings(area=area)
        self.policy, self.sleep = RetryPolicy(attempts, backoff, max_backoff), sleep
        try:
            self.controller = RigController.open(url, timeout=timeout)
        except (serial.SerialException, OSError) as exc:
            raise InstrumentLost(name, url, f"cannot open the line ({exc})") from exc
        self.reconnects = 0
        # A backend dropped without close() (a lab rebuilt in a session) must not leak its line.
        self._line = {"port": self._port()}
        weakref.finalize(self, close_port, self._line)

    def read_force(self) -> float:
        """Measure the force, N."""
        return self._exchange("force reading", lambda c: c.force)

    def read_pressure(self) -> float:
        """Measure the stack pressure: force over the pressed area, Pa."""
        return self.read_force() / self.params.area

    def crosshead_position(self) -> float:
        """Measure the crosshead position, m."""
        return self._exchange("crosshead position", lambda c: c.position)

    def set_target(self, pascal: float) -> None:
        """Set the pressure the firmware's loop holds, Pa (sent as a force)."""
        self._exchange("target", lambda c: setattr(c, "target_force", pascal * self.params.area))

    def hold(self, enabled: bool) -> None:
        """Control the firmware's hold loop."""
        self._exchange("hold switch", lambda c: setattr(c, "holding", bool(enabled)))

    def release(self) -> None:
        """Stop holding and retract the crosshead."""
        self._exchange("release", lambda c: c.release())

    def close(self) -> None:
        """Close the line."""
        close_port(self._line)

    def _exchange(self, what: str, call):
        try:
            return retry(lambda: call(self._open_line()), policy=self.policy, transient=self._transient,
                         give_up=lambda error, attempts: InstrumentLost(
                             self.name, self.url,
                             f"no valid {what} after {attempts} attempts ({error}); check the cable and the address"),
                         on_failure=lambda error: self.close(), sleep=self.sleep,
                         label=f"{self.name} at {self.url}: {what}")
        except RigRefused as exc:
            raise RigRefused(f"{self.name} at {self.url}, {what}: {exc}") from exc

    @staticmethod
    def _transient(error: BaseException) -> bool:
        """A timeout, a garbled line or a dropped port is worth another try; a refusal is not."""
        return isinstance(error, (RigProtocolError, serial.SerialException, OSError)) and not isinstance(
            error, RigRefused)

    def _port(self) -> serial.SerialBase:
        """Return the controller's pyserial port (pymeasure types it as its adapter's connection)."""
        return cast(serial.SerialBase, self.controller.adapter.connection)

    def _open_line(self) -> RigController:
        """Return the controller, on a fresh line if a failure closed the last one."""
        if not self._line["port"].is_open:
            self._reopen()
        return self.controller

    def _reopen(self) -> None:
        """Start again on a fresh line: a late or half reply must not be taken for the next one."""
        self.reconnects += 1
        self.close()
        try:
            self.controller = RigController.open(self.url, timeout=self.timeout)
            self._line["port"] = self._port()
        except (serial.SerialException, OSError) as exc:
            # Keep the closed line: the next attempt fails at once and backs off again.
            log.warning("%s at %s: cannot reopen the line (%s)", self.name, self.url, exc)
