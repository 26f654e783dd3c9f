"""A simulated EC-Lab library: the ``BL_*`` functions of ``EClib64.dll`` over a :class:`SimCell`.

It stands in for the vendor's DLL under :class:`devices.biologic.eclib.EClib`, taking the same
ctypes arguments (structures by value and by pointer, C strings as bytes) and answering with the
same return codes and binary buffers, so the binding, the encoder and the parser run unchanged in
every test. It simulates one SP-200 with the cell on one channel: a VMP-300 board taking ``*4.ecc``
files by default, or a VMP3 board taking the suffixless ones. Three parts, one job each:

- :mod:`.library`, :class:`SimEClib`: the ``BL_*`` shim, checking arguments, connection,
  firmware and channel state as the real library does and answering with its codes
  (:class:`~devices.biologic.eclib.ErrorCode`);
- :mod:`.channel`, :class:`SimChannel`: the channel's state machine, running the loaded techniques
  on the cell up to the clock's present whenever the library is called (there are no callbacks,
  as with the real instrument);
- :mod:`.records`: the record encoder, the channel's memory in the words ``BL_GetData`` returns.

:mod:`.techniques` holds the guide's technique ids, time bases and parameter tables that the first
two share. ``TCurrentValues.TimeBase`` returned with a buffer is the time base of the technique
that wrote it; the time bases of OCV, CP and CALIMIT are the guide's, those of CPLIMIT (taken as
CALIMIT's) and of the impedance techniques are assumptions.

Fault switches, for the reliability tests: set ``fault`` to one of ``FAULTS`` (None for none) and
every call that talks to the instrument fails with the library's code for it: ``no_reply`` with
``COMM_COMMFAILED`` (-200; ``BL_Connect`` with ``COMM_CONNECTIONFAILED``, -201), as when the
network or USB link is gone; ``garbled`` with ``INSTR_RESPERROR`` (-104), a reply that did not
make sense; ``exception`` with ``INSTR_VMEERROR`` (-101), the instrument failing inside
(``BL_Connect`` still succeeds: the instrument answers). ``disconnect()`` drops the library's
session: calls fail with ``GEN_NOTCONNECTED`` (-1) until ``BL_Connect`` again. Calls the library
answers by itself (messages, parameter definitions, conversions) never fail. A failed call has no
effect on the instrument (the request did not reach it), and the instrument runs on regardless: a
technique keeps running and recording into the channel's memory while the link is down.
"""

from devices.sim.eclib.channel import SimChannel
from devices.sim.eclib.library import CONNECT_FAULT_CODES, FAULT_CODES, FAULTS, SimEClib
from devices.sim.eclib.records import Chunk, Memory
from devices.sim.eclib.techniques import TECHNIQUES, Loaded

__all__ = ["CONNECT_FAULT_CODES", "FAULTS", "FAULT_CODES", "TECHNIQUES", "Chunk", "Loaded", "Memory", "SimChannel",
           "SimEClib"]
