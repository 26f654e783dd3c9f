"""labctl's exceptions: each carries the context needed to find the problem and says how to fix it.

A foundation module: it never imports devices or plans.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from enum import IntEnum
from pathlib import Path


class ExitCode(IntEnum):
    """``labctl``'s exit statuses, one per kind of ending; each typed error below names its own."""

    SUCCESS = 0
    RUN_FAILED = 1  # a step ended other than successfully (a fault, a short missed, Ctrl-C, SIGTERM, SIGHUP)
    USAGE = 2  # the command line: an unknown option, a bad value, a run that does not exist
    INVALID_FILE = 3  # an experiment or lab file refused (file, line, field and what is allowed)
    UNREACHABLE = 4  # an instrument or the data storage cannot be reached (or a data directory is missing)
    INTERNAL = 70  # a bug in labctl (sysexits' EX_SOFTWARE): the message says so
    INTERRUPTED = 130  # Ctrl-C outside a run (128 + SIGINT, as shells do)


class LabctlError(Exception):
    """Base of every error labctl raises on purpose; the CLI prints these without a traceback.

    ``exit_code`` is the :class:`ExitCode` the CLI ends with; subclasses set their own.
    """

    exit_code = ExitCode.USAGE


class UsageError(LabctlError):
    """A mistake on the command line that argparse cannot see: a run uid not stored, an unwritable ``--out``."""

    exit_code = ExitCode.USAGE


class Unreachable(LabctlError):
    """An instrument, its vendor library, or the data storage cannot be reached (exit code 4)."""

    exit_code = ExitCode.UNREACHABLE


class DataDirectoryMissing(Unreachable):
    """A command that reads stored runs was pointed at a directory that holds none.

    Parameters
    ----------
    data_dir : Path
        The directory given (``--data-dir``, or the lab file's ``storage.data_dir``).
    why : str
        "does not exist", or what it lacks.
    """

    def __init__(self, data_dir: Path, why: str):
        self.data_dir = data_dir
        super().__init__(f"data directory {data_dir}: {why}; give the one `labctl run` stored into with --data-dir "
                         f"(or the lab file's storage.data_dir)")


class ConfigError(LabctlError):
    """One problem in a config file, located by file, line and field.

    Exit code 3 (invalid file), as for :class:`ConfigErrors`.

    Parameters
    ----------
    path : str or Path, optional
        The file, shown as given (relative paths stay relative).
    line : int, optional
        1-based line of the offending key or item, if known.
    field : str, optional
        Dotted path of the field, e.g. ``steps[3].current_density`` (list indices from 0).
    message : str
        What is wrong and, where possible, what to write instead.
    """

    exit_code = ExitCode.INVALID_FILE

    def __init__(self, path: str | Path | None, line: int | None, field: str | None, message: str):
        self.message = message
        self.path = None if path is None else str(path)
        self.line = line
        self.field = field or None
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.path or "<config>"
        if self.line is not None:
            where += f":{self.line}"
        if self.field:
            where += f": {self.field}"
        return f"{where}: {self.message}"


class ConfigErrors(LabctlError):
    """Every problem found in a config file, so one edit can fix them all; one per line, in line order.

    Parameters
    ----------
    errors : iterable of ConfigError
        The problems (at least one).
    """

    exit_code = ExitCode.INVALID_FILE

    def __init__(self, errors: Iterable[ConfigError]):
        self.errors = sorted(errors, key=lambda e: (e.path or "", e.line or 0))
        if not self.errors:
            raise ValueError("ConfigErrors needs at least one ConfigError")
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(error) for error in self.errors)

    def __iter__(self) -> Iterator[ConfigError]:
        return iter(self.errors)

    def __len__(self) -> int:
        return len(self.errors)


class LimitError(LabctlError, ValueError):
    """A request past an instrument's hardware limit (from the lab file), refused before it reaches the wire.

    Also a ``ValueError``, so code that guards a setpoint with ``except ValueError`` keeps working.

    Parameters
    ----------
    instrument : str
        The device's name, e.g. ``"rig"``.
    quantity : str
        What was requested, e.g. ``"pressure"``.
    requested : float
        The requested value, SI.
    allowed : (float or None, float or None)
        The allowed range, SI; ``None`` for an open end.
    unit : str, optional
        Display unit for the message, e.g. ``"MPa"`` (values are converted from SI).
    fix : str, optional
        What to do about it; a generic hint by default.
    """

    exit_code = ExitCode.INVALID_FILE  # outside a plan, a limit is a value in a file
    default_fix = "ask for a value inside that range, or change the limit in the lab file if the hardware allows it"

    def __init__(
        self,
        instrument: str,
        quantity: str,
        requested: float,
        allowed: tuple[float | None, float | None],
        unit: str | None = None,
        fix: str | None = None,
    ):
        self.instrument, self.quantity = instrument, quantity
        self.requested, self.allowed = requested, tuple(allowed)
        self.unit, self.fix = unit, fix or self.default_fix
        super().__init__(
            f"{instrument}: {quantity} {self._show(requested)} is outside the allowed range "
            f"{self._range()}: {self.fix}"
        )

    def _show(self, value: float) -> str:
        if self.unit is None:
            return f"{value:g}"
        from labctl.core.units import Unit  # lazily: only messages need pint

        return f"{Unit(self.unit).from_si(value):g} {self.unit}"

    def _range(self) -> str:
        low, high = self.allowed
        if low is None:
            return f"(at most {self._show(high)})"
        if high is None:
            return f"(at least {self._show(low)})"
        return f"[{self._show(low)}, {self._show(high)}]"


class TemperatureOutOfRange(LimitError):
    """A chamber setpoint outside the chamber's temperature range (K in, degC in the message)."""

    def __init__(self, chamber: str, requested: float, allowed: tuple[float, float], fix: str | None = None):
        super().__init__(chamber, "temperature", requested, allowed, unit="degC", fix=fix)


class PressureOutOfRange(LimitError):
    """A stack pressure outside the rig's pressure range (Pa in, MPa in the message)."""

    def __init__(self, rig: str, requested: float, allowed: tuple[float, float], fix: str | None = None):
        super().__init__(rig, "pressure", requested, allowed, unit="MPa", fix=fix)


class CurrentOutOfRange(LimitError):
    """A current beyond the potentiostat's current limit (A in, mA in the message)."""

    def __init__(self, potentiostat: str, requested: float, limit: float, fix: str | None = None):
        super().__init__(
            potentiostat, "current", requested, (-limit, limit), unit="mA",
            fix=fix or "lower the current density or use a smaller electrode",
        )


LITHIUM_MELTING_POINT = 453.65  # K (180.5 degC); cell-model.md asks for no margin below it


class LithiumWouldMelt(LabctlError, ValueError):
    """A temperature at or above lithium's melting point for a cell with lithium metal in it.

    The experiment file's validation, the conditioning plan and the chamber device all ask
    :meth:`refuses`, so the rule is stated once. Also a ``ValueError``, as the other limits are.

    Parameters
    ----------
    instrument : str
        The device (or step) that was asked, e.g. ``"chamber"``.
    requested : float
        The requested temperature, K (degC in the message).
    """

    exit_code = ExitCode.INVALID_FILE

    def __init__(self, instrument: str, requested: float):
        self.instrument, self.requested = instrument, requested
        melts = LITHIUM_MELTING_POINT - 273.15
        super().__init__(
            f"{instrument}: {requested - 273.15:.2f} degC would melt the cell's lithium (Li melts at {melts:g} degC): "
            f"keep a cell with lithium in it below {melts:g} degC"
        )

    @staticmethod
    def refuses(kelvin: float, contains_lithium: bool) -> bool:
        """Return whether ``kelvin`` is refused: at or above lithium's melting point, with lithium in the cell."""
        return contains_lithium and kelvin >= LITHIUM_MELTING_POINT


class StorageError(LabctlError):
    """A data directory, asset file or data server labctl cannot use: the path, what is wrong, what to do.

    Parameters
    ----------
    path : str or Path
        The data directory, file or server URI (without its API key).
    problem : str
        What is wrong with it, e.g. ``"is not writable (read-only file system)"``.
    fix : str
        What to do about it.
    """

    exit_code = ExitCode.UNREACHABLE

    def __init__(self, path: str | Path, problem: str, fix: str):
        self.path, self.problem, self.fix = str(path), problem, fix
        super().__init__(f"{self.path}: {problem}: {fix}")
