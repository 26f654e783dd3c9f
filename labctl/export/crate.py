"""A sequence's runs bundled as an RO-Crate (``labctl export UID --format rocrate``).

UID is any run of the sequence (one ``labctl run`` of an experiment file); the crate holds every
run whose start document carries that ``sequence_id``, in step order, in a folder
``<experiment>-<sequence8>.rocrate`` (replaced if it is there already):

====================================  ===============================================================
``ro-crate-metadata.json``            the RO-Crate metadata (1.3), written by the ``rocrate`` library
``experiment.yaml``                   the experiment file, rebuilt from the runs' start documents:
                                      the cell and each step that ran with its arguments as written
                                      (comments and guards are not recorded, so not rebuilt)
``<uid8>-<plan>/``                    one folder per run: ``<uid8>-<plan>.nc``, every stream (NetCDF);
                                      the Battery Data Format files and the spectra and fits tables
                                      (runs with potentiostat rows); the cell as BattINFO JSON-LD; the
                                      report (HTML and figures) in ``report/``
====================================  ===============================================================

Each run folder is a ``Dataset`` (its uid as ``identifier``, its time span as ``temporalCoverage``)
and each run a ``CreateAction`` (RO-Crate's provenance: ``instrument`` labctl, ``startTime``,
``endTime``, ``actionStatus`` from the stop document, ``result`` the run's folder); the BDF files
``conformsTo`` the BDF ontology, the JSON-LD the EMMO domain-battery context.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import yaml

BDF_IRI = "https://w3id.org/battery-data-alliance/ontology/battery-data-format"
FORMATS = {".csv": "text/csv", ".parquet": "application/vnd.apache.parquet", ".nc": "application/x-netcdf",
           ".jsonld": "application/ld+json", ".html": "text/html", ".png": "image/png", ".yaml": "application/yaml"}


def export_sequence_crate(run, out: Path) -> Path:
    """Write the RO-Crate of ``run``'s sequence into ``out``; return the crate's folder."""
    return export_crate(sequence_runs(run), out)


def sequence_runs(run) -> list:
    """Every stored run of ``run``'s sequence, in step order (``run`` alone if it has no sequence)."""
    from tiled.queries import Key

    from labctl.storage import CheckedRun

    sequence = run.start.get("sequence_id")
    if sequence is None:
        return [run]
    found = [run if uid == run.start["uid"] else CheckedRun(other)  # run itself is checked already
             for uid, other in run.parent.search(Key("start.sequence_id") == sequence).items()]
    return sorted(found, key=lambda r: (r.start.get("step_index", 0), r.start.get("repeat_index", 0), r.start["time"]))


def export_crate(runs: list, out: Path) -> Path:
    """Write ``runs`` (of one sequence, in order) as an RO-Crate folder in ``out``; return the folder."""
    from rocrate.model import ContextEntity
    from rocrate.rocrate import ROCrate

    from importlib.metadata import version

    from labctl.export.battinfo import CONTEXT_URL

    first = runs[0].start
    sequence = first.get("sequence_id") or first["uid"]
    folder = Path(out) / f"{first.get('experiment') or first.get('plan_name')}-{sequence[:8]}.rocrate"
    if folder.exists():  # a crate lists exactly what it holds: start afresh
        shutil.rmtree(folder)
    crate = ROCrate()
    crate.name = f"labctl sequence {sequence}: experiment {first.get('experiment')} on cell {first['cell']['id']}"
    crate.description = (f"{len(runs)} runs of experiment {first.get('experiment')} on cell {first['cell']['id']} "
                         f"(lab {first.get('lab')}{', simulated' if first.get('simulated') else ''}), each with "
                         f"its streams, Battery Data Format exports, BattINFO cell description and report")
    crate.root_dataset["identifier"] = sequence
    crate.root_dataset["datePublished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    labctl = crate.add(ContextEntity(crate, "#labctl", properties={
        "@type": "SoftwareApplication", "name": "labctl", "version": version("labctl")}))
    bdf = crate.add(ContextEntity(crate, BDF_IRI, properties={"@type": "CreativeWork", "name": "Battery Data Format",
                                                              "version": "1.3.0"}))
    battinfo = crate.add(ContextEntity(crate, CONTEXT_URL, properties={
        "@type": "CreativeWork", "name": "EMMO domain-battery JSON-LD context (BattINFO)"}))
    Path(out).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out, prefix=".labctl-crate-") as staging:  # the files, before the crate copies them
        experiment = Path(staging) / "experiment.yaml"
        experiment.write_text(experiment_yaml(runs))
        crate.add_file(experiment, "experiment.yaml", properties={
            "name": "experiment file", "encodingFormat": FORMATS[".yaml"],
            "description": "rebuilt from the runs' start documents: the cell and each step that ran, arguments as written"})
        for run in runs:
            _add_run(crate, run, Path(staging), {"labctl": labctl, "bdf": bdf, "battinfo": battinfo})
        crate.write(folder)
    return folder


def experiment_yaml(runs: list) -> str:
    """An experiment file that runs ``runs``' steps again: the cell and each step's arguments as written."""
    first = runs[0].start
    cell, written = first["cell"], first["cell"].get("as_written", {})
    quantities = set(cell.get("units", {}))
    rebuilt_cell = {key: written[key] if key in quantities else value for key, value in cell.items()
                    if key not in ("units", "as_written") and value is not None
                    and (key not in quantities or key in written)}  # a quantity labctl computed stays out
    steps = []
    for _, group in itertools.groupby(runs, key=lambda r: r.start.get("step_index")):
        group = list(group)
        start = group[0].start
        step = {"plan": start["plan_name"]}
        if start.get("step_label") not in (None, start["plan_name"]):
            step["label"] = start["step_label"]
        step.update(start.get("plan_args_as_written", {}))
        if len(group) > 1:
            step["repeat"] = len(group)
        steps.append(step)
    header = (f"# Rebuilt by labctl export from the start documents of sequence {first.get('sequence_id')}\n"
              f"# (lab {first.get('lab')}): the cell and the {len(steps)} steps that ran, with their arguments as written.\n")
    return header + yaml.safe_dump({"name": first.get("experiment"), "cell": rebuilt_cell, "steps": steps},
                                   sort_keys=False, allow_unicode=True)


class LoadedRun:
    """A run read from the server once (start, stop, each stream's Dataset and metadata), for its several exports."""

    def __init__(self, run):
        self.start, self.stop = dict(run.start), dict(run.stop) if run.stop else None
        self._streams = {name: (run[name].read(), dict(run[name].metadata)) for name in run}
        self.missing = dict(getattr(run, "missing", {}))  # streams whose files are missing (labctl.storage.CheckedRun)

    def __iter__(self):
        return iter(self._streams)

    def __contains__(self, name) -> bool:
        return name in self._streams

    def __getitem__(self, name):
        dataset, metadata = self._streams[name]
        return type("Stream", (), {"read": lambda _: dataset.copy(), "metadata": metadata})()


def _add_run(crate, run, staging: Path, entities: dict) -> None:
    """Export and report one run into its folder of the crate, and describe them."""
    from labctl.export import export_netcdf
    from labctl.export.battinfo import export_battinfo
    from labctl.export.bdf import export_bdf
    from labctl.report import write_report

    run = LoadedRun(run)
    start, stop = run.start, run.stop or {}
    name = f"{start['uid'][:8]}-{start.get('plan_name')}"
    here = staging / name
    paths = [export_netcdf(run, here)]
    if "potentiostat" in run:
        paths += export_bdf(run, here)
    paths.append(export_battinfo(run, here))
    report = write_report(run, here / "report")
    paths += sorted((here / "report").iterdir())
    span = "/".join(_iso(t) for t in (start["time"], stop.get("time")) if t is not None)
    dataset = crate.add_dataset(None, f"{name}/", properties={
        "name": f"run {start['uid'][:8]}: step {start.get('step_index', 0) + 1} {start.get('plan_name')}",
        "description": f"{stop.get('exit_status', 'open')}: {stop.get('reason') or 'no stop document'}" + "".join(
            f"; stream {stream} not exported, its files are missing: {', '.join(files)}"
            for stream, files in run.missing.items()),
        "identifier": start["uid"], "temporalCoverage": span})
    files = []
    for path in paths:
        properties = {"name": path.name, "encodingFormat": FORMATS[path.suffix]}
        if path.name.endswith((".bdf.csv", ".bdf.parquet")):
            properties["conformsTo"] = entities["bdf"]
        if path.suffix == ".jsonld":
            properties["conformsTo"] = entities["battinfo"]
        if path == report:
            properties["description"] = "the run's report: fits, how it ended, figures"
        files.append(crate.add_file(path, path.relative_to(staging).as_posix(), properties=properties))
    dataset["hasPart"] = files
    status = "CompletedActionStatus" if stop.get("exit_status") == "success" else "FailedActionStatus"
    action = {"@type": "CreateAction", "name": f"labctl ran {start.get('plan_name')} (run {start['uid']})",
              "instrument": entities["labctl"], "startTime": _iso(start["time"]), "result": dataset,
              "actionStatus": {"@id": f"http://schema.org/{status}"}}
    if stop.get("time") is not None:
        action["endTime"] = _iso(stop["time"])
    from rocrate.model import ContextEntity

    crate.add(ContextEntity(crate, f"#run-{start['uid']}", properties=action))


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat(timespec="seconds")
