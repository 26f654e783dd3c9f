"""Alerts through apprise, and a watchdog of a rig's data, for a lab running through the night.

The lab file's ``alerts`` section (:class:`labctl.config.rigs.AlertsSection`) names apprise URLs
and routes events to them. :class:`Alerter` sends from its own thread: :meth:`Alerter.send` only
puts the message on a queue, so a slow or failing server never blocks or fails a plan; a failed
send is logged and retried with growing waits. :class:`AlertCallback` turns a run's documents into
events (a short, a guard's pause, resume or end, a run's end); :func:`alert_faults` wraps a plan
so that an instrument fault ending it (a device error, a lost connection) is an alert naming the
instrument and its address. :class:`Watchdog`, run as its own process (``labctl watchdog
LAB.yaml``), reads only the rig's journal: it says when an open run has had no new data for
``no_data_after`` (a hung or dead run), and when runs that ended ``server_behind_after`` ago or
more are still not on the data server (uploads pending: the server is down or behind).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from pathlib import Path
from typing import Callable

log = logging.getLogger(__name__)

GUARD_EVENTS = {0: "guard_pause", 1: "guard_resume", 2: "guard_end"}  # plans.guards.DECISIONS


class Alerter:
    """Send alerts of one rig to the URLs its lab file routes each event to, from a background thread."""

    def __init__(self, section, rig: str, *, retry_wait: float = 5.0, capacity: int = 1000):
        import warnings

        with warnings.catch_warnings():  # apprise 1.x imports imghdr, deprecated since Python 3.11
            warnings.simplefilter("ignore", DeprecationWarning)
            import apprise  # noqa: F401 - imported here, on the caller's thread, not in the sender's
            import importlib.util

            if importlib.util.find_spec("imghdr"):  # apprise imports it when it first sends
                import imghdr  # noqa: F401
        self.section, self.rig, self.retry_wait = section, rig, retry_wait
        self._messages: queue.Queue = queue.Queue(capacity)
        self._stopping = threading.Event()
        self.failed: list[tuple[str, str]] = []  # (event, URL) given up after every retry
        self._thread = threading.Thread(target=self._loop, name=f"alerts {rig}", daemon=True)
        self._thread.start()

    def send(self, event: str, title: str, body: str) -> None:
        """Queue an alert; never blocks (a full queue drops it, logged)."""
        try:
            self._messages.put_nowait((event, f"[{self.rig}] {event}: {title}", body))
        except queue.Full:
            log.error("alerts: queue full, dropped %s: %s", event, title)

    def close(self, timeout: float = 10.0) -> None:
        """Send what is queued (up to ``timeout``), then stop the thread."""
        self._messages.put((None, "", ""))
        self._thread.join(timeout)
        self._stopping.set()

    def _loop(self) -> None:
        while True:
            event, title, body = self._messages.get()
            if event is None:
                return
            for url in self.section.targets(event):
                self._deliver(event, url, title, body)

    def _deliver(self, event: str, url: str, title: str, body: str) -> None:
        import apprise

        for attempt in range(self.section.retries + 1):
            sender = apprise.Apprise()
            try:
                if sender.add(url) and sender.notify(title=title, body=body):
                    return
                problem = "the service refused it or could not be reached"
            except Exception as error:  # apprise plugins raise on odd input: log, never pass it on
                problem = f"{type(error).__name__}: {error}"
            log.warning("alerts: %s to %s failed (attempt %d): %s", event, url.split("://")[0], attempt + 1, problem)
            if self._stopping.wait(self.retry_wait * 2 ** attempt):
                break
        self.failed.append((event, url))
        log.error("alerts: gave up sending %s to a %s URL", event, url.split("://")[0])


class AlertCallback:
    """A RunEngine callback: a short, a guard's decisions and each run's end become alerts."""

    def __init__(self, alerter: Alerter):
        self.alerter = alerter
        self._guard_descriptors: set[str] = set()
        self._starts: dict[str, dict] = {}

    def __call__(self, name: str, doc: dict) -> None:
        try:
            getattr(self, f"_{name}", lambda doc: None)(doc)
        except Exception:  # an alert must never fail a plan
            log.exception("alerts: could not make an alert of a %s document", name)

    def _start(self, doc: dict) -> None:
        self._starts[doc["uid"]] = doc

    def _descriptor(self, doc: dict) -> None:
        if doc.get("name") == "guards":
            self._guard_descriptors.add(doc["uid"])

    def _event(self, doc: dict) -> None:
        if doc["descriptor"] in self._guard_descriptors:
            decision = next(v for k, v in doc["data"].items() if k.endswith("decision"))
            self.alerter.send(GUARD_EVENTS[int(decision)], "guard", f"guard decision {GUARD_EVENTS[int(decision)]}")

    def _stop(self, doc: dict) -> None:
        start = self._starts.pop(doc["run_start"], {})
        cell = (start.get("cell") or {}).get("id", "?")
        what = f"{start.get('plan_name', '?')} on cell {cell}: {doc.get('exit_status')}: {doc.get('reason') or ''}"
        if (doc.get("result") or {}).get("ended_by") == "short":
            self.alerter.send("short", f"cell {cell} shorted", what)
        self.alerter.send("experiment_end", f"run ended on cell {cell}", what)


def instrument_fault(error: BaseException):
    """Return the :class:`devices.errors.InstrumentFault` behind ``error`` (its causes, a failure it wraps), or None."""
    from devices.errors import InstrumentFault

    seen, todo = set(), [error]
    while todo:
        current = todo.pop(0)
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, InstrumentFault):
            return current
        todo += [getattr(current, "failure", None), current.__cause__, current.__context__]
    return None


def alert_faults(alerter: Alerter, start: Callable, context: Callable[[], dict] = dict):
    """Run the plan ``start()`` returns (``yield from``); if an instrument fault ends it, alert ``instrument_fault``.

    ``context()`` gives the item's metadata (plan step, file, cell) for the message. The error
    goes on to the RunEngine as it was: the run ends as failed, as it would without alerts.
    """
    try:
        return (yield from start())
    except Exception as error:
        fault = instrument_fault(error)
        if fault is not None:
            meta = context() or {}
            where = ", ".join(f"{key} {meta[key]}" for key in ("experiment_file", "step_label") if meta.get(key))
            cell = (meta.get("cell") or {}).get("id")
            alerter.send("instrument_fault", f"{fault.instrument} at {fault.address}",
                         f"{error}" + (f" ({where}{', cell ' + cell if cell else ''})" if where or cell else ""))
        raise


class Watchdog:
    """Alert when a rig's open run has had no new data for ``after`` s, or ended runs wait for the server.

    Independent of the run: it reads only the journal's files (``data_dir/journal``: a run's
    ``.jsonl``, and its ``.pending`` marker until the data server has it), so it notices a run
    that hung or died, and a data server that is down or behind. A run is open until its journal
    ends with its stop document; an ended run still pending ``behind_after`` s after that (the
    journal's last write) counts as behind. Each condition alerts once, and again only after it
    has cleared. :meth:`check` is one look (at ``now``); :meth:`run` looks every minute.
    """

    def __init__(self, data_dir: Path, alerter: Alerter, after: float, clock: Callable[[], float] = time.time,
                 behind_after: float | None = None):
        self.journal, self.alerter, self.after, self.clock = Path(data_dir) / "journal", alerter, after, clock
        self.behind_after = behind_after
        self.alerted = False
        self.alerted_behind = False

    def check(self, now: float | None = None) -> bool:
        """Look once; return whether the rig is silent (alerting on the first look that finds it so)."""
        now = self.clock() if now is None else now
        pending = [p for p in self.journal.glob("*.jsonl") if p.with_suffix(".pending").exists()]
        ended = [p for p in pending if _ended(p)]
        open_runs = [p for p in pending if p not in ended]
        newest = max((p.stat().st_mtime for p in open_runs), default=None)
        silent = newest is not None and now - newest > self.after
        if silent and not self.alerted:
            self.alerter.send("no_data", f"no new data for {self.after / 60:g} min",
                              f"no new data from rig {self.alerter.rig} for {(now - newest) / 60:.0f} min "
                              f"while a run is open ({len(open_runs)} in {self.journal})")
        self.alerted = silent
        if self.behind_after is not None:
            self._check_behind(ended, now)
        return silent

    def _check_behind(self, ended: list[Path], now: float) -> None:
        late = [p for p in ended if now - p.stat().st_mtime > self.behind_after]
        if late and not self.alerted_behind:
            oldest = min(p.stat().st_mtime for p in late)
            reason = _pending_reason(late[0])
            self.alerter.send("server_behind", f"{len(late)} runs not on the data server",
                              f"rig {self.alerter.rig}: {len(late)} ended runs still only in {self.journal}, "
                              f"the oldest ended {(now - oldest) / 60:.0f} min ago ({reason}); they are "
                              f"delivered when the server takes them (or `labctl recover`)")
        self.alerted_behind = bool(late)

    def run(self, interval: float = 60.0, stop: threading.Event | None = None) -> None:
        stop = stop or threading.Event()
        while not stop.wait(interval):
            self.check()


def _ended(journal_file: Path) -> bool:
    """Whether a run's journal ends with its stop document (read from the file's last bytes)."""
    import json

    with open(journal_file, "rb") as file:
        file.seek(0, 2)
        file.seek(max(0, file.tell() - 65536))
        lines = file.read().splitlines()
    try:
        return bool(lines) and json.loads(lines[-1]).get("name") == "stop"
    except ValueError:  # a last line cut short: the run did not end cleanly, it is not closed
        return False


def _pending_reason(journal_file: Path) -> str:
    import json

    try:
        return json.loads(journal_file.with_suffix(".pending").read_text())["reason"]
    except (OSError, ValueError, KeyError):
        return "reason unreadable"
