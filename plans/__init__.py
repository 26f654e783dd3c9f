"""bluesky plans for solid-state-battery experiments.

``PLANS`` maps the names used in experiment YAML files to the plan functions; the config layer
builds each step's validation from these signatures, so a plan and its YAML cannot drift apart.
"""

from plans.electrochemistry import plate, rest
from plans.environment import set_pressure, set_temperature

PLANS = {
    "set_temperature": set_temperature,
    "set_pressure": set_pressure,
    "rest": rest,
    "plate": plate,
}

__all__ = ["PLANS", "plate", "rest", "set_pressure", "set_temperature"]
