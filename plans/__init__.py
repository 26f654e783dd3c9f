"""bluesky plans for solid-state-battery experiments.

``PLANS`` maps the names used in experiment YAML files to the plan functions; the config layer
builds each step's validation from these signatures, so a plan and its YAML cannot drift apart.
"""

from plans.conditioning import condition_cell, pressure_program
from plans.conductivity import electronic_conductivity_step, ionic_conductivity_arrhenius
from plans.cycling import ccd_staircase, plate_strip
from plans.electrochemistry import plate, rest
from plans.environment import set_pressure, set_temperature
from plans.impedance import peis

PLANS = {
    "set_temperature": set_temperature,
    "set_pressure": set_pressure,
    "condition_cell": condition_cell,
    "pressure_program": pressure_program,
    "rest": rest,
    "plate": plate,
    "plate_strip": plate_strip,
    "ccd_staircase": ccd_staircase,
    "peis": peis,
    "ionic_conductivity_arrhenius": ionic_conductivity_arrhenius,
    "electronic_conductivity_step": electronic_conductivity_step,
}

__all__ = [
    "PLANS", "ccd_staircase", "condition_cell", "electronic_conductivity_step", "ionic_conductivity_arrhenius",
    "peis", "plate", "plate_strip", "pressure_program", "rest", "set_pressure", "set_temperature",
]
