"""Lab and experiment files: YAML in, typed SI models out, every problem named by file, line and field.

A lab file (``configs/lab-sim.yaml``) says which instruments a lab has and their hardware limits.
An experiment file (``configs/plating-overnight.yaml``) says which cell is in the rig and which
plans to run on it. Quantities are written with units (``0.5 mA/cm^2``, ``5 MPa``) and stored as SI
floats. Each step's arguments are checked against a model generated from the plan's own signature,
so the YAML schema of a plan cannot drift from the plan.

The package by role: :mod:`~labctl.config.documents` (YAML with line numbers),
:mod:`~labctl.config.problems` (pydantic errors as located messages), :mod:`~labctl.config.lab` and
:mod:`~labctl.config.experiment` (the models), :mod:`~labctl.config.steps` (step models from plan
signatures), :mod:`~labctl.config.limits` (checks against the lab) and :mod:`~labctl.config.loading`.

Public API: :func:`load_lab`, :func:`load_experiment`, :func:`check_against_lab`,
:func:`build_step_model`, and the models :class:`LabConfig`, :class:`Experiment`, :class:`Cell`,
:class:`Step`. Both loaders raise :class:`~labctl.core.errors.ConfigErrors` with every problem found.
"""

from labctl.config.documents import (  # noqa: F401
    Location,
    Document,
    MAX_FILE_BYTES,
    MAX_DEPTH,
    MAX_VALUES,
    StrictLoader,
    read_yaml,
    dotted,
)
from labctl.config.problems import (  # noqa: F401
    FieldProblems,
    raise_problems,
    validate,
    translate,
)
from labctl.config.lab import (  # noqa: F401
    ConfigModel,
    IDENTIFIER,
    IDENTIFIER_RULE,
    Identifier,
    Voltage,
    Temperature,
    Pressure,
    ROLES,
    SP200_LARGEST_RANGE,
    HOST,
    SERIAL_PORT,
    USB_PORT,
    host_problem,
    host_port_problem,
    modbus_address_problem,
    rig_address_problem,
    potentiostat_address_problem,
    ADDRESS_FORMS,
    InstrumentConfig,
    PotentiostatConfig,
    CHAMBER_KINDS,
    RIG_KINDS,
    ANALYSER_KINDS,
    ChamberConfig,
    RigConfig,
    ImpedanceAnalyserConfig,
    Instruments,
    StorageConfig,
    LabConfig,
)
from labctl.config.experiment import (  # noqa: F401
    ELECTRODE_BY_KIND,
    CELL_QUANTITIES,
    CELL_SI_UNITS,
    Cell,
    STEP_KEYS,
    MAX_REPEAT,
    Step,
    Guard,
    TemperatureGuard,
    PressureGuard,
    Guards,
    Experiment,
)
from labctl.config.steps import (  # noqa: F401
    RUNNER_FILLED,
    build_step_model,
    parameter_docs,
    check_steps,
)
from labctl.config.limits import (  # noqa: F401
    roles_needed,
    experiment_roles,
    check_roles,
    check_against_lab,
)
from labctl.config.loading import (  # noqa: F401
    load_lab,
    load_experiment,
)
from labctl.core.errors import ConfigError, ConfigErrors  # noqa: F401  (imported from here today)
