"""The cell of a run as BattINFO JSON-LD (``labctl export UID --format battinfo``).

BattINFO (github.com/BIG-MAP/BattINFO) describes batteries as linked data typed against the EMMO
domain-battery ontology. The document follows its records and those of Empa's BattINFO converter
(``tests/fixtures/converter/coincell_reference_v3.jsonld`` in BattINFO, commit a600a72): the context
is EMMO domain-battery's, ``https://w3id.org/emmo/domain/battery/context``, and each quantity is a
node ``{"@type": <quantity>, "hasNumericalPart": {"@type": "RealData", "hasNumberValue": x},
"hasMeasurementUnit": <unit>}``. Every term used is in that context (version 0.20.2, the one
BattINFO bundles); ``domain-battery.context.json`` beside this module holds those terms with the
same IRIs, so the export can be read offline through :func:`document_loader`.

``<uid8>-<plan>.battinfo.jsonld`` describes one ``ElectrochemicalCell`` (a test cell, not a battery):

- ``hasElectrolyte``: a ``SolidElectrolyte`` pellet with its ``molecularFormula`` (LLZTO by default),
  ``Thickness`` and ``Porosity`` (1 - the relative density the cell file gives);
- ``hasWorkingElectrode`` and ``hasCounterElectrode``: ``Electrode`` nodes with their active
  material (Li, Li and Mg with the Mg ``MoleFraction`` of a tracer cell, Ni; another material is
  named in ``rdfs:label`` only), ``ElectrodeGeometricSurfaceArea`` and ``Diameter`` when given;
- ``hasMeasuredProperty``: the stack ``Pressure`` and the ``AmbientCelsiusTemperature``, each the
  median of the rig's and the chamber's readings during the run; a run without them says in
  ``rdfs:comment`` that it is not determined, and why;
- ``schema:additionalProperty``: labctl's own fields (cell kind, surface, treatment), as
  ``schema:PropertyValue`` nodes, as the Battery Data Format's registry records carry theirs.

Values are SI (m, m^2, Pa), the temperature in degrees Celsius.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

CONTEXT_URL = "https://w3id.org/emmo/domain/battery/context"
CONTEXT_FILE = Path(__file__).with_name("domain-battery.context.json")

# The substances of the electrode materials labctl's cell kinds use (labctl.config.ELECTRODE_BY_KIND).
SUBSTANCES = {"Li": ["Lithium"], "LiMg": ["Lithium", "Magnesium"], "Ni": ["Nickel"]}
UNITS = {"m": "Metre", "m^2": "SquareMetre", "Pa": "Pascal", "degC": "DegreeCelsius", "1": "UnitOne"}  # EMMO's
COUNTER_BY_KIND = {"tracer": "Li"}  # a tracer cell's counter electrode is lithium; the others' is the working one's


def export_battinfo(run, out: Path) -> Path:
    """Write the cell of ``run`` as ``<uid8>-<plan>.battinfo.jsonld`` in ``out``; return its path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{run.start['uid'][:8]}-{run.start.get('plan_name')}.battinfo.jsonld"
    path.write_text(json.dumps(cell_document(run), indent=2) + "\n")
    return path


def cell_document(run) -> dict:
    """The BattINFO JSON-LD document of the cell in ``run``'s start document, with its pressure and temperature."""
    from labctl.export import stream_dataset

    start, cell = run.start, run.start["cell"]
    environment = stream_dataset(run["environment"]) if "environment" in run else None
    measured, undetermined = [], []
    for quantity, key, unit, label in (("Pressure", "rig_pressure", "Pa", "stack pressure"),
                                       ("AmbientCelsiusTemperature", "chamber_temperature", "degC", "chamber temperature")):
        value, why = _median(environment, key, unit)
        if value is None:
            undetermined.append(f"{label}: not determined: {why}")
        else:
            measured.append({**_quantity(quantity, value, UNITS[unit]),
                             "rdfs:label": f"{label}, median of the readings during run {start['uid'][:8]}"})
    kind = cell["kind"]
    working = cell.get("electrode_material") or ""
    document = {
        "@context": CONTEXT_URL,
        "@type": "ElectrochemicalCell",
        "schema:productID": cell["id"],
        "schema:name": cell["id"],
        "rdfs:comment": [f"{kind} cell {working} | {cell['electrolyte']} | {COUNTER_BY_KIND.get(kind, working)}, "
                         f"as run {start['uid']} ({start.get('plan_name')}, experiment {start.get('experiment')}) "
                         f"recorded it; exported by labctl"] + undetermined,
        "hasElectrolyte": _electrolyte(cell),
        "hasWorkingElectrode": _electrode(cell, working, "working electrode"),
        "hasCounterElectrode": _electrode(cell, COUNTER_BY_KIND.get(kind, working), "counter electrode"),
        "schema:additionalProperty": [
            {"@type": "schema:PropertyValue", "schema:name": name, "schema:value": cell[name]}
            for name in ("kind", "surface", "treatment") if cell.get(name) is not None
        ],
    }
    if measured:
        document["hasMeasuredProperty"] = measured
    return document


def document_loader(url: str, options=None) -> dict:
    """A pyld document loader that serves the EMMO domain-battery context from labctl's copy, fetching nothing.

    ``pyld.jsonld.expand(doc, {"documentLoader": document_loader})`` reads an export offline.
    """
    if url.rstrip("/") != CONTEXT_URL:
        raise ValueError(f"{url}: labctl ships only the EMMO domain-battery context ({CONTEXT_URL})")
    return {"contextUrl": None, "documentUrl": url, "document": json.loads(CONTEXT_FILE.read_text())}



def _quantity(quantity: str, value: float, unit: str) -> dict:
    return {"@type": quantity, "hasNumericalPart": {"@type": "RealData", "hasNumberValue": float(value)},
            "hasMeasurementUnit": unit}


def _electrolyte(cell: dict) -> dict:
    properties = [{"@type": "molecularFormula", "hasStringValue": cell["electrolyte"]},
                  _quantity("Thickness", cell["thickness"], UNITS["m"])]
    if cell.get("relative_density") is not None:
        properties.append({**_quantity("Porosity", round(1 - cell["relative_density"], 12), UNITS["1"]),
                           "rdfs:comment": f"1 - the relative density, {cell['relative_density']:g}"})
    return {"@type": "SolidElectrolyte", "rdfs:label": f"{cell['electrolyte']} pellet", "hasProperty": properties}


def _electrode(cell: dict, material: str, role: str) -> dict:
    node = {"@type": "Electrode", "rdfs:label": f"{role}: {material}"}
    if material in SUBSTANCES:
        node["hasActiveMaterial"] = [{"@type": substance} for substance in SUBSTANCES[material]]
    properties = [_quantity("ElectrodeGeometricSurfaceArea", cell["electrode_area"], UNITS["m^2"])]
    if cell.get("electrode_diameter") is not None:
        properties.append(_quantity("Diameter", cell["electrode_diameter"], UNITS["m"]))
    if material == "LiMg" and cell.get("mg_fraction") is not None:
        properties.append({**_quantity("MoleFraction", cell["mg_fraction"], UNITS["1"]), "rdfs:label": "Mg fraction"})
    node["hasProperty"] = properties
    return node


def _median(environment, key: str, unit: str) -> tuple[float | None, str]:
    """The median of an environment field in ``unit``, or (None, why not)."""
    if environment is None:
        return None, "the run recorded no environment stream"
    if key not in environment:
        return None, f"the run's environment stream has no {key}"
    from labctl.export.bdf import in_unit

    values = in_unit(environment, key, unit)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None, f"the run recorded no {key} reading"
    return float(np.median(values)), ""
