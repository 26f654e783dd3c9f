"""The whole-tree layers contract in pyproject.toml names every top-level module of labctl.

import-linter cannot put ``labctl`` above ``plans`` and ``labctl.core`` below ``devices`` (a layer
cannot contain another), so the roof layer lists labctl's modules one by one; this test keeps that
list complete, so a new module cannot slip past the contract.
"""

import pkgutil
import tomllib
from pathlib import Path

import labctl

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def layers_contract() -> list[str]:
    contracts = tomllib.loads(PYPROJECT.read_text())["tool"]["importlinter"]["contracts"]
    (layers,) = [c["layers"] for c in contracts if c["type"] == "layers"]
    return layers


def test_the_roof_layer_names_every_labctl_module_but_the_core():
    roof = {name.strip() for name in layers_contract()[0].split(":")}
    modules = {f"labctl.{m.name}" for m in pkgutil.iter_modules(labctl.__path__) if m.name != "core"}
    assert roof == modules


def test_the_layers_run_roof_plans_devices_core():
    assert layers_contract()[1:] == ["plans", "devices", "labctl.core"]
