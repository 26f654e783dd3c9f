"""Errors every instrument driver raises when a request fails for good, naming the instrument and its address.

A driver retries what may pass (a timeout, a garbled reply, a dropped connection) and reconnects;
what is left after that reaches the plan as one of these, so the run's stop reason says which
instrument, where, and what happened. No bluesky or ophyd here: the wire drivers raise them.
"""

from __future__ import annotations

from labctl.core.errors import ExitCode, LabctlError


class InstrumentFault(LabctlError):
    """An instrument failed a request: it refused it, or reported an error of its own.

    Parameters
    ----------
    instrument : str
        The instrument's role or name, e.g. ``"chamber"``.
    address : str
        Where it is reached, e.g. ``tcp://10.0.0.5:502`` or ``USB0, channel 1``.
    detail : str
        What was asked and what happened.
    """

    exit_code = ExitCode.UNREACHABLE

    def __init__(self, instrument: str, address: str, detail: str):
        self.instrument, self.address, self.detail = instrument, address, detail
        super().__init__(f"{instrument} at {address}: {detail}")


class InstrumentLost(InstrumentFault, ConnectionError):
    """No valid reply from an instrument through every retry and reconnection: it is out of reach."""
