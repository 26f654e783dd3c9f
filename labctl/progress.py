"""The progress display of ``labctl run``: step, simulated time, plated capacity."""

from __future__ import annotations

from rich.console import Console
from rich.progress import Progress, TextColumn, TimeElapsedColumn

from labctl.units import Unit

CAPACITY = Unit("mAh/cm^2")


class ExperimentProgress:
    """Shows which step runs, the session clock's elapsed time and the charge plated per area.

    Parameters
    ----------
    runner : ExperimentRunner
        The runner whose lab and steps are shown.
    """

    def __init__(self, runner):
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
            fields["capacity"] = f"plated {CAPACITY.from_si(charge / self.area):.3f} mAh/cm^2"
        self.progress.update(self.task, **fields)
