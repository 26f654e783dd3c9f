"""One writer per data directory and per instrument: lock files with a holder and a heartbeat.

A lock is a small JSON file saying who holds it: pid, host, what for (the experiment, or
``labctl serve``), since when, and a heartbeat on the wall clock that a thread of the holder
refreshes every :data:`HEARTBEAT_SECONDS` (this is about processes, not the session clock). A
second process asking for a held lock gets :class:`LockHeld`, a one-line refusal naming the
holder. A lock whose holder is gone is taken over with a message: on this host, when its pid is
no longer alive; on any host, when its heartbeat is older than :data:`STALE_AFTER`.

Where the locks are:

- ``DATA_DIR/writer.lock``: the process writing runs into the data directory (``labctl run``).
  It lists the runs it has started, so ``labctl recover`` leaves those alone.
- ``DATA_DIR/server.json``: the tiled server serving the data directory (the embedded server
  of a ``labctl run``, or ``labctl serve``), with its URI and API key (the file is readable by
  its owner only). Other labctl processes on this data directory go through that server instead
  of opening its databases themselves.
- ``LOCK_DIR/instrument-<lab>-<role>-<address>.lock``: one per instrument of a lab, in the lab
  file's ``storage.lock_dir``; a real lab (``simulated: false``) without one uses
  :func:`default_lock_dir` (machine-wide, so two data directories cannot hide two experiments on
  one instrument). A simulated lab's instruments are private to each process and are locked only
  when the lab file names a ``lock_dir``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import socket
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from labctl.core.errors import LabctlError

logger = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 10.0
STALE_AFTER = 120.0  # a holder silent this long (wall clock) is gone, whatever its pid says


class LockHeld(LabctlError):
    """Another live process holds a lock: the refusal names it and says what to do."""

    def __init__(self, what: str, holder: dict, fix: str):
        self.what, self.holder = what, holder
        super().__init__(f"{what} is in use by {describe_holder(holder)}: {fix}")


def describe_holder(holder: dict) -> str:
    """``labctl run (experiment plating-overnight) pid 4242 on labpc since 2026-12-01T20:00:00+00:00``."""
    role = holder.get("role", "labctl")
    experiment = f" (experiment {holder['experiment']})" if holder.get("experiment") else ""
    since = f" since {holder['started']}" if holder.get("started") else ""
    return f"{role}{experiment} pid {holder.get('pid')} on {holder.get('host')}{since}"


def default_lock_dir() -> Path:
    """Where a real lab's instrument locks go when its lab file names no ``storage.lock_dir``."""
    return Path(tempfile.gettempdir()) / "labctl-locks"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def read_holder(path: Path) -> dict | None:
    """The holder recorded in a lock file, or None if there is none (or it is unreadable)."""
    try:
        holder = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) else None


def is_stale(holder: dict, now: float | None = None) -> str | None:
    """Why a recorded holder is gone (its pid is dead here, or its heartbeat is old), or None if it is live."""
    now = time.time() if now is None else now
    if holder.get("host") == socket.gethostname() and not _alive(int(holder.get("pid", -1))):
        return f"its process {holder.get('pid')} is no longer running"
    age = now - float(holder.get("heartbeat", 0.0))
    if age > STALE_AFTER:
        return f"its heartbeat is {age:.0f} s old"
    return None


def live_holder(path: Path, *, others_only: bool = True) -> dict | None:
    """The holder of a lock file if it is live (and, with ``others_only``, not this process), else None."""
    holder = read_holder(path)
    if holder is None or is_stale(holder) or (others_only and _is_mine(holder)):
        return None
    return holder


def _is_mine(holder: dict) -> bool:
    return holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname()


class Lock:
    """One lock file, held by this process from :meth:`acquire` to :meth:`release`.

    Parameters
    ----------
    path : Path
        The lock file.
    what : str
        What it protects, for messages: ``"data directory /data"``, ``"instrument potentiostat at 10.0.0.5"``.
    fix : str
        What to do when it is held, for the refusal.
    """

    def __init__(self, path: Path, what: str, fix: str):
        self.path, self.what, self.fix = Path(path), what, fix
        self.holder: dict[str, Any] | None = None
        self.took_over: str | None = None  # the message, if a stale lock was taken over
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._write_lock = threading.Lock()

    def acquire(self, role: str, experiment: str | None = None, **extra) -> Lock:
        """Take the lock or raise :class:`LockHeld`; a stale one is taken over (see ``took_over``)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        now = time.time()
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "role": role, "experiment": experiment,
                  "started": datetime.fromtimestamp(now).astimezone().isoformat(timespec="seconds"),
                  "heartbeat": now, **extra}
        with self._guard():
            previous = read_holder(self.path)
            if previous is not None and not _is_mine(previous):
                stale = is_stale(previous, now)
                if stale is None:
                    raise LockHeld(self.what, previous, self.fix)
                self.took_over = f"{self.what}: took over the lock of {describe_holder(previous)} ({stale})"
                logger.warning(self.took_over)
            self.holder = holder
            self._write()
        self._thread = threading.Thread(target=self._beat, name=f"labctl-lock-{self.path.name}", daemon=True)
        self._thread.start()
        return self

    def update(self, **fields) -> None:
        """Change fields of the recorded holder (e.g. the runs it writes)."""
        if self.holder is None:
            return
        with self._write_lock:
            self.holder.update(fields)
        self._write()

    def release(self) -> None:
        """Remove the lock file if this process still holds it. Safe to call twice."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self.holder is None:
            return
        with self._guard():
            current = read_holder(self.path)
            if current is not None and _is_mine(current):
                self.path.unlink(missing_ok=True)
        self.holder = None

    def __enter__(self) -> Lock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    # ---- helpers -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _guard(self):
        """Serialise check-and-take between processes of this host (a sidecar file, flock)."""
        with open(self.path.with_name(self.path.name + ".guard"), "a") as guard:
            fcntl.flock(guard, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(guard, fcntl.LOCK_UN)

    def _write(self) -> None:
        """Write the holder atomically (a reader never sees half a file), readable by its owner only."""
        with self._write_lock:
            text = json.dumps(self.holder, default=str)
            temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as file:
                file.write(text)
            os.replace(temporary, self.path)

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            if self.holder is None:
                return
            with self._write_lock:
                self.holder["heartbeat"] = time.time()
            try:
                self._write()
            except OSError as error:  # a full disk must not kill the run; the lock goes stale
                logger.warning("%s: heartbeat not written: %s", self.what, error)


# ---- the locks labctl takes ----------------------------------------------------------------------
WRITER_LOCK = "writer.lock"
SERVER_STATE = "server.json"


def writer_lock(data_dir: Path) -> Lock:
    """The lock of the process that writes runs into ``data_dir``."""
    return Lock(Path(data_dir) / WRITER_LOCK, f"data directory {data_dir}",
                "wait for that run to end (or stop it), or use another --data-dir")


def server_lock(data_dir: Path) -> Lock:
    """The state file of the tiled server serving ``data_dir`` (its URI, for the other processes)."""
    return Lock(Path(data_dir) / SERVER_STATE, f"the tiled server of data directory {data_dir}",
                "stop that server first, or connect to it (its URI is in " f"{Path(data_dir) / SERVER_STATE})")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "_"


def instrument_locks(lab_config, experiment: str | None) -> list[Lock]:
    """Take one lock per instrument of the lab (see the module docstring for where); raise LockHeld.

    Returns the locks taken (empty for a simulated lab without ``storage.lock_dir``); release
    them when the experiment ends. On a refusal, the locks already taken are released.
    """
    lock_dir = getattr(lab_config.storage, "lock_dir", None)
    if lock_dir is None and lab_config.simulated:
        return []
    directory = Path(lock_dir).expanduser() if lock_dir else default_lock_dir()
    taken: list[Lock] = []
    try:
        for role, instrument in _instruments(lab_config):
            address = str(getattr(instrument, "address", "sim"))
            if getattr(instrument, "channel", None) is not None:  # one lock per potentiostat channel
                address += f" channel {instrument.channel}"
            name = f"instrument-{_slug(lab_config.name)}-{_slug(role)}-{_slug(address)}.lock"
            lock = Lock(directory / name, f"instrument {role} at {address} (lab {lab_config.name})",
                        "wait for that experiment to end, or stop it")
            taken.append(lock.acquire("labctl run", experiment))
    except BaseException:
        for lock in taken:
            lock.release()
        raise
    return taken


def _instruments(lab_config):
    instruments = lab_config.instruments
    for role in ("potentiostat", "chamber", "rig", "impedance_analyser"):
        instrument = getattr(instruments, role, None)
        if instrument is not None:
            yield role, instrument
