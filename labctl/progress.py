"""The progress display of ``labctl run``: step, simulated time, plated capacity; output that survives a closed pipe."""

from __future__ import annotations

import contextlib
import errno
import io
import os
import sys

# rich and labctl.core.units (pint) are imported where the display is built: every command goes
# through survive_closed_pipes below, and `labctl --help` must not pay for them.


class ExperimentProgress:
    """Shows which step runs, the session clock's elapsed time and the charge plated per area.

    Parameters
    ----------
    runner : ExperimentRunner
        The runner whose lab and steps are shown.
    """

    def __init__(self, runner):
        from rich.console import Console
        from rich.progress import Progress, TextColumn, TimeElapsedColumn

        from labctl.core.units import Unit

        self.capacity_unit = Unit("mAh/cm^2")
        self.runner = runner
        self.clock = runner.lab.clock
        self.area = runner.experiment.cell.electrode_area_m2
        self.start = self.clock.now()
        self.console = Console(stderr=True)
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            TextColumn("{task.fields[clock]}"),
            TextColumn("{task.fields[capacity]}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=False,
        )
        self.task = None

    def __enter__(self):
        self.progress.__enter__()
        self.task = self.progress.add_task("starting", clock="", capacity="")
        self._token = self.runner.lab.potentiostat.charge.subscribe(self._charge_changed, run=False)
        return self

    def __exit__(self, *exc):
        self.runner.lab.potentiostat.charge.clear_sub(self._charge_changed)
        self._refresh()
        self.progress.__exit__(*exc)

    def step_started(self, index: int, step) -> None:
        total = len(self.runner.experiment.steps)
        self.progress.update(self.task, description=f"step {index + 1}/{total} {step.plan}")
        self._refresh()
        if not self.console.is_terminal:
            self.console.print(f"step {index + 1}/{total}: {step.plan}")

    def _charge_changed(self, value=None, **kwargs) -> None:
        self._refresh(abs(value or 0.0))
        if not self.console.is_terminal:  # a log (nohup, CI): one line per stored page
            task = self.progress.tasks[0]
            self.console.print(f"{task.fields['clock']}: {task.fields['capacity']}".strip(": "))

    def _refresh(self, charge: float | None = None) -> None:
        hours = (self.clock.now() - self.start) / 3600
        fields = {"clock": f"simulated {hours:6.2f} h" if getattr(self.clock, "is_virtual", False) else ""}
        if charge is not None:
            fields["capacity"] = f"plated {self.capacity_unit.from_si(charge / self.area):.3f} mAh/cm^2"
        self.progress.update(self.task, **fields)


class ClosedPipeSafeStream(io.TextIOBase):
    """A text stream (stdout or stderr) whose reader may go away: then output goes to /dev/null.

    ``labctl run X | tee log`` with Ctrl-C kills ``tee`` too, and ``| head -3`` closes the pipe
    after three lines. A write would then raise ``BrokenPipeError`` wherever it happens (a signal
    handler, the RunEngine's loop, the progress display), and the run would end without its stop
    document and the lab left as it was. Here the first failed write points the file descriptor
    itself at /dev/null (``os.dup2``), so every later write, including Python's own flush at
    exit and writes by code holding the original stream, succeeds and goes nowhere.

    Parameters
    ----------
    stream : TextIO
        The stream wrapped, e.g. ``sys.stdout``.
    """

    def __init__(self, stream):
        self.stream = stream
        self.closed_pipe = False

    def write(self, text: str) -> int:
        if self.stream is None:
            return len(text)
        try:
            return self.stream.write(text)
        except (BrokenPipeError, ValueError, OSError) as error:
            self._discard(error)
            return len(text)

    def flush(self) -> None:
        if self.stream is None:
            return
        try:
            self.stream.flush()
        except (BrokenPipeError, ValueError, OSError) as error:
            self._discard(error)

    def _discard(self, error: Exception) -> None:
        if isinstance(error, OSError) and error.errno not in (errno.EPIPE, errno.EINVAL, errno.EBADF, None):
            raise error  # a full disk behind a redirection is not a reader gone away
        if not self.closed_pipe:
            self.closed_pipe = True
            try:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, self.stream.fileno())
                os.close(devnull)
            except (OSError, ValueError, io.UnsupportedOperation):
                self.stream = None  # no descriptor to redirect: drop what is written from now on

    def isatty(self) -> bool:
        if self.stream is None:
            return False
        try:
            return self.stream.isatty()
        except (ValueError, OSError):
            return False

    def fileno(self) -> int:
        return self.stream.fileno()

    def writable(self) -> bool:
        return True

    @property
    def encoding(self):
        return getattr(self.stream, "encoding", "utf-8")

    @property
    def errors(self):
        return getattr(self.stream, "errors", "strict")

    def __getattr__(self, name):
        return getattr(self.stream, name)


@contextlib.contextmanager
def survive_closed_pipes():
    """Within the block, ``sys.stdout`` and ``sys.stderr`` are :class:`ClosedPipeSafeStream` s."""
    saved = sys.stdout, sys.stderr
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None and not isinstance(stream, ClosedPipeSafeStream):
            setattr(sys, name, ClosedPipeSafeStream(stream))
    try:
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        sys.stdout, sys.stderr = saved
