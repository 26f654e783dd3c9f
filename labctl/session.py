"""A session: the clock, a RunEngine whose sleep follows that clock, the lab, and storage."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import signal
import sys
import threading

from bluesky import RunEngine
from bluesky.run_engine import DefaultDuringTask, TransitionError
from bluesky.utils import RunEngineInterrupted
from event_model import DocumentNames

from labctl.core.clock import VirtualClock, WallClock

RESULT_STREAM = "result"  # plans.stubs.RESULT: the stream of a plan's outcome
SECOND_INTERRUPT = "aborted: Ctrl-C pressed twice"
TERMINATED = "aborted: the process was asked to terminate (SIGTERM)"
HUNG_UP = "aborted: the terminal was closed (SIGHUP)"
INTERRUPTIBLE = ("sleep", "wait", "wait_for")
ABORT_SIGNALS = {signal.SIGTERM: TERMINATED, signal.SIGHUP: HUNG_UP}


class RunEndingLogged(logging.Filter):
    """Drop bluesky's "Run aborted" records: their traceback repeats what the stop document and
    ``labctl run``'s summary say (exit status and reason), and an abort is no error."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "Run aborted"


logging.getLogger("bluesky").addFilter(RunEndingLogged())


def say(text: str) -> None:
    """Tell the operator on stderr; never fail (a signal handler calls it, and stderr may be a closed pipe)."""
    try:
        print(text, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


class LabRunEngine(RunEngine):
    """bluesky's RunEngine with the lab's Ctrl-C policy: one press pauses, a second aborts.

    Pausing calls ``pause()`` on every device the plan touched: the potentiostat opens the
    circuit, the chamber and the rig keep their setpoints. ``RE.resume()`` carries on from where
    the plan was (plating starts its next segment); ``RE.abort()`` ends the run with the cell at
    open circuit. A second Ctrl-C before the paused RunEngine has handed back control aborts at
    once; after that (at a prompt) the choice is ``RE.resume()`` or ``RE.abort()``, or in
    ``labctl run`` Enter or Ctrl-C. SIGTERM and SIGHUP abort at once with their own reason.

    ``abort_requested`` is set when a signal asks for the end (Ctrl-C twice, SIGTERM, SIGHUP), so
    a command can bound the time its cleanup may take.

    Not rewindable: bluesky's rewind replays the messages since the last checkpoint, which
    would kick off a technique twice; an instrument cannot un-plate lithium.
    """

    def __init__(self, *args, clock=None, **kwargs):
        kwargs.setdefault("context_managers", [PauseOnInterrupt])
        kwargs.setdefault("during_task", SignalsHeardDuringTask())
        super().__init__(*args, **kwargs)
        self.clock = clock or WallClock()
        self._results: dict[str, dict] = {}  # run uid -> its result event's data (see emit_sync)
        self._result_descriptors: dict[str, str] = {}  # descriptor uid -> run uid
        self.rewindable = False
        self.interrupts = 0
        self.abort_reason = SECOND_INTERRUPT
        self.abort_requested = threading.Event()
        self._waiting = 0  # > 0 while a wait or sleep message is awaited: a pause may cut it short
        for command in INTERRUPTIBLE:
            self.register_command(command, self._interruptible(self._command_registry[command]))

    def register_command(self, name, func):
        """Register a command; a ``sleep`` or ``wait`` stays one a pause may cut short (see ``_request_pause_coro``)."""
        if name in INTERRUPTIBLE and not getattr(func, "interruptible", False):
            func = self._interruptible(func)
        super().register_command(name, func)

    def _interruptible(self, coro):
        async def command(msg):
            self._waiting += 1
            try:
                return await coro(msg)
            finally:
                self._waiting -= 1

        command.interruptible = True
        return command

    async def _request_pause_coro(self, defer=False):
        """Pause at once, but never in the middle of a message that changes a run's documents.

        bluesky cancels the running message; in a plan that does not rewind, a cancelled ``read``
        is lost and the event being bundled no longer matches its descriptor. So a ``sleep`` or
        ``wait`` (where plans spend their time: between samples, during a sweep) is cut short,
        and any other message finishes first; the pause comes before the next one.
        """
        if defer or self._waiting:
            return await super()._request_pause_coro(defer)
        if not self.state.can_pause:
            raise TransitionError(f"Run Engine is in '{self.state}' state and can not be paused.")
        self._deferred_pause_requested = False
        self._interrupted = True
        self._state = "pausing"
        for current_run in self._run_bundlers.values():
            current_run.record_interruption("pause")
        self._run_permit.clear()  # the _run loop pauses at the top of its next message

    def __call__(self, *args, **kwargs):
        return self._aborting_on_second_interrupt(super().__call__, *args, **kwargs)

    def resume(self):
        return self._aborting_on_second_interrupt(super().resume)

    def emit_sync(self, name, doc):
        """Stamp every document with the session clock, copy the result into the stop document, dispatch.

        bluesky (through event-model) stamps documents with ``time.time()``; on the simulated lab
        that is not the clock the data are on, so a night's events would all fall within seconds.
        Every document is composed just before it is emitted, so the session clock's reading here
        is its time. The one event of a plan's ``result`` stream (:func:`plans.stubs.record_result`)
        is also copied into its run's stop document as ``result``, so runs can be searched by
        their outcome (``Key("stop.result.ended_by") == "short"``) without reading a stream.
        """
        now = self.clock.now()
        if name in (DocumentNames.event_page, "event_page"):
            doc["time"] = [now] * len(doc["time"])
        elif "time" in doc:
            doc["time"] = now
        self._note_result(str(getattr(name, "value", name)), doc)
        super().emit_sync(name, doc)

    def _note_result(self, name: str, doc: dict) -> None:
        if name == "descriptor" and doc.get("name") == RESULT_STREAM:
            self._result_descriptors[doc["uid"]] = doc["run_start"]
        elif name == "event" and doc.get("descriptor") in self._result_descriptors:
            self._results[self._result_descriptors[doc["descriptor"]]] = {  # NaN as None: JSON has no NaN
                key.removeprefix(f"{RESULT_STREAM}_"): None if isinstance(value, float) and math.isnan(value) else value
                for key, value in doc["data"].items()
            }
        elif name == "stop":
            self._result_descriptors = {d: r for d, r in self._result_descriptors.items() if r != doc["run_start"]}
            result = self._results.pop(doc["run_start"], None)
            if result is not None:
                doc["result"] = result  # the stop schema allows extra keys (patternProperties)

    def _aborting_on_second_interrupt(self, call, *args, **kwargs):
        self.interrupts, self.abort_reason = 0, SECOND_INTERRUPT
        try:
            return call(*args, **kwargs)
        except RunEngineInterrupted:
            if self.interrupts >= 2 and self.state == "paused":
                return self.abort(reason=self.abort_reason)
            raise


class SignalsHeardDuringTask(DefaultDuringTask):
    """While a plan runs, wake the main thread often enough that a signal's handler runs at once.

    The kernel may deliver SIGHUP, SIGTERM or SIGINT to any thread of the process (the RunEngine's
    loop, the uploader), and Python runs the handler on the main thread only, when it next runs
    bytecode. bluesky's default waits on the plan's Event without a timeout, so such a signal
    waited for the plan's end: a simulated run plated on to its time limit past a SIGHUP. Waking
    every ``poll`` seconds bounds that delay. With matplotlib's Qt backend bluesky's own Qt loop is
    kept: it wakes on signals through ``signal.set_wakeup_fd``.
    """

    poll = 0.05  # seconds

    def block(self, blocking_event):
        if _qt_backend_in_use():
            return super().block(blocking_event)
        while not blocking_event.wait(self.poll):
            pass


def _qt_backend_in_use() -> bool:
    matplotlib = sys.modules.get("matplotlib")
    return matplotlib is not None and "qt" in matplotlib.get_backend().lower()


class PauseOnInterrupt:
    """RunEngine context manager: SIGINT requests an immediate pause and counts the presses; SIGTERM and SIGHUP abort.

    It replaces bluesky's ``SigintHandler``, whose first press is a deferred pause at the next
    checkpoint; these plans have none, so the cell would keep plating. SIGTERM (a service stopped,
    the machine shutting down) and SIGHUP (the terminal closed) pause and abort at once, so the
    plan's cleanup runs: without it Python would exit with the cell still under current. The
    handlers only count and start a thread: they never block, and never raise (a closed pipe
    included), so the RunEngine's own loop does the work.
    """

    def __init__(self, RE: LabRunEngine):
        self.RE = RE
        self.previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.previous = {signal.SIGINT: signal.signal(signal.SIGINT, self._interrupted)}
            for signum in ABORT_SIGNALS:
                self.previous[signum] = signal.signal(signum, self._terminated)
        return self

    def __exit__(self, *exc):
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        self.previous = {}

    def _interrupted(self, signum, frame):
        self.RE.interrupts += 1
        if self.RE.interrupts == 1:
            say("Ctrl-C: pausing (the cell goes to open circuit); Ctrl-C again aborts.")
            self._pause()
        elif self.RE.interrupts == 2:
            say("Ctrl-C again: aborting (the cell stays at open circuit)")
            self.RE.abort_requested.set()

    def _terminated(self, signum, frame):
        self.RE.interrupts, self.RE.abort_reason = 2, ABORT_SIGNALS[signum]
        say(f"{signal.Signals(signum).name}: aborting (the cell goes to open circuit)")
        self.RE.abort_requested.set()
        self._pause()

    def _pause(self):
        """Schedule an immediate pause on the RunEngine's loop, before its next message; never wait here.

        ``RE.request_pause`` blocks until the loop has run the request, which a signal handler must
        not; scheduling it at once (rather than from a thread) also means a simulated run, whose
        clock jumps, cannot run ahead of the press: the virtual sleep yields to the loop first.
        """
        if self.RE.state.can_pause:
            asyncio.run_coroutine_threadsafe(self._pause_now(), self.RE.loop)

    async def _pause_now(self):
        if self.RE.state.can_pause:  # the RunEngine may have finished, or be pausing, meanwhile
            await self.RE._request_pause_coro(defer=False)  # what request_pause runs on the loop


@contextlib.contextmanager
def signals_held():
    """While the lab is made safe, SIGINT, SIGTERM and SIGHUP are noted, not acted on.

    A KeyboardInterrupt raised halfway through would leave the chamber at its last setpoint.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def note(signum, frame):
        say(f"{signal.Signals(signum).name}: making the lab safe first")

    previous = {signum: signal.signal(signum, note) for signum in (signal.SIGINT, *ABORT_SIGNALS)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def make_run_engine(clock: VirtualClock | WallClock, pace: float | None = None, **kwargs) -> LabRunEngine:
    """Return a :class:`LabRunEngine` whose ``sleep`` advances ``clock`` when it is virtual.

    Parameters
    ----------
    clock : VirtualClock or WallClock
        The session clock.
    pace : float, optional
        For demos on the virtual clock: simulated seconds per wall second (e.g. 3600 shows an
        hour a second). None runs as fast as the computer can.
    """
    RE = LabRunEngine({}, call_returns_result=True, clock=clock, **kwargs)
    if getattr(clock, "is_virtual", False):
        RE.register_command("sleep", _virtual_sleep(clock, pace))
    return RE


def _virtual_sleep(clock: VirtualClock, pace: float | None):
    async def sleep(msg):
        seconds = float(msg.args[0])
        # Yield to the loop first (a pause requested meanwhile cancels the sleep before the clock moves).
        await asyncio.sleep(seconds / pace if pace else 0)
        clock.advance(seconds)

    return sleep
