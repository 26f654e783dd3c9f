"""How fast ``labctl`` answers: ``--help``, ``check``, ``runs`` and ``show`` on a data directory of 1,000 runs.

Each command runs as a person runs it, in a fresh interpreter, twice: the way it goes now, and the
way it went before issue 15 (the "old" column), side by side in the same run, so the ratio holds
on a loaded machine too. Besides the wall time the child's CPU time is printed: on a machine
shared with other work it is the steadier figure. Target (issue 15): at most 1 s each.

The old paths, as they were:
- ``--help`` imported rich and pint (labctl.progress) before parsing;
- ``runs`` started an embedded tiled server (a ``tiled catalog init`` subprocess first) and listed
  the runs through tiled's HTTP API; now it reads the catalog's SQLite file;
- ``show`` and ``check`` paid the same ``tiled catalog init`` subprocess (show) and imports.

The data directory: the short experiment of tests/conftest.py run once through ``labctl run``
(4 real runs, the plating hour among them, for ``show``), then 996 runs of start and stop
documents written through tiled's catalog adapter in process (what TiledWriter writes for a run
without streams), which takes seconds where 996 runs through the server take minutes.

Measured at the end of issue 15's round on the 2-core machine under a load average of 10-17
(other work running; so wall times are several times a quiet machine's), new vs old:
``--help`` 0.59 s wall / 0.11 s CPU vs 3.18 / 0.75 (5.4x); ``runs`` of 1,000 runs 5.2 s / 1.0 s
vs 79 s / 12.3 s (15x); ``check --no-dry-run`` 10.5 s / 2.3 s; ``check`` 34 s / 6.7 s; ``show``
of the plating run 69 s / 17.4 s vs 263 s / 46 s (the missing-file check no longer reads every
column of a stream: 615 requests to the server before). Not yet within 1 s: ``check`` and ``show``
(imports of scipy.signal, pint's registry, tiled's server; the dry run's simulation and fits).

Run it with ``make bench`` or ``python -m pytest -m benchmark -s tests/benchmarks/bench_cli.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import resource
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from labctl.cli import main

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"
RUNS = 1000
TARGET_S = 1.0
# The old paths, as scripts for a fresh interpreter (see the module docstring).
OLD_HELP = "import rich.progress, labctl.core.units\nfrom labctl.cli import main\nmain(['--help'])"
OLD_INIT = ("import subprocess, sys\nfrom labctl.dataserver import catalog_path\n"
            "subprocess.run([sys.executable, '-m', 'tiled', 'catalog', 'init', '--if-not-exists',"
            " f'sqlite+aiosqlite:///{catalog_path(DATA)}'], check=True, capture_output=True)\n")
OLD_RUNS = OLD_INIT + ("from labctl.storage import Storage\nwith Storage.open(DATA) as storage:\n"
                       "    runs, pending = storage.runs(), storage.pending()\nprint(len(runs))")
OLD_SHOW = OLD_INIT + "import sys\nfrom labctl.cli import main\nsys.exit(main(['show', UID, '--data-dir', str(DATA), '--out', OUT]))"


async def add_runs(catalog_db: Path, count: int) -> None:
    """Write ``count`` runs (start and stop documents, no streams) into a tiled catalog, in process."""
    from sqlalchemy import event
    from tiled.catalog import from_uri
    from tiled.structures.core import Spec, StructureFamily

    from labctl.storage import RUNS_NODE

    adapter = from_uri(catalog_db)
    # A benchmark's throwaway catalog: no fsync per node.
    event.listen(adapter.context.engine.sync_engine, "connect",
                 lambda connection, record: connection.execute("PRAGMA synchronous = OFF"))
    await adapter.startup()
    try:
        runs = await adapter.lookup_adapter([RUNS_NODE])
        for i in range(count):
            uid = str(uuid.uuid4())
            start = {"uid": uid, "time": 1.7e9 + 60.0 * i, "plan_name": "rest", "cell": {"id": f"LLZTO-{i % 7}"},
                     "scan_id": i, "versions": {}}
            stop = {"uid": str(uuid.uuid4()), "run_start": uid, "time": start["time"] + 30.0, "exit_status": "success",
                    "reason": "rest completed after 30 s", "num_events": {"primary": 3}}
            await runs.create_node(StructureFamily.container, {"start": start, "stop": stop}, key=uid,
                                   specs=[Spec("BlueskyRun", "3.0")])
    finally:
        await adapter.shutdown()


def build_data_dir(folder: Path, short_experiment: str) -> tuple[Path, str, float]:
    """The 1,000-run data directory; return (it, the plating run's uid, seconds it took to build)."""
    started = time.perf_counter()
    experiment = folder / "short.yaml"
    experiment.write_text(short_experiment)
    data_dir = folder / "data"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["run", str(experiment), "--data-dir", str(data_dir)]) == 0, printed.getvalue()
    uid = next(line.split()[0] for line in printed.getvalue().splitlines() if " plate " in line)
    from labctl.dataserver import catalog_path

    asyncio.run(add_runs(catalog_path(data_dir), RUNS - 4))
    return data_dir, uid, time.perf_counter() - started


def timed(argv: list[str]) -> tuple[float, float, str]:
    """Run ``argv`` in a fresh process; return (wall s, its CPU s, what it printed)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert done.returncode == 0, done.stderr
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done.stdout


def labctl(*args: str) -> list[str]:
    return [sys.executable, "-m", "labctl.cli", *args]


def script(text: str, **names) -> list[str]:
    """A ``python -c`` command with ``names`` defined first (DATA as a Path, the rest as strings)."""
    prelude = "".join(f"{name} = {value!r}\n" for name, value in names.items() if name != "DATA")
    if "DATA" in names:
        prelude += f"from pathlib import Path\nDATA = Path({str(names['DATA'])!r})\n"
    return [sys.executable, "-c", prelude + text]


def run_benchmark(data_dir: Path, uid: str, out: Path) -> list[tuple[str, tuple, tuple | None]]:
    """(command, (new wall, cpu), (old wall, cpu) or None) for each command."""
    overnight = str(CONFIGS / "plating-overnight.yaml")
    rows = []
    cases = [
        ("labctl --help", labctl("--help"), script(OLD_HELP)),
        ("labctl check --no-dry-run", labctl("check", overnight, "--no-dry-run"), None),
        ("labctl check (dry run)", labctl("check", overnight), None),
        (f"labctl runs ({RUNS} runs)", labctl("runs", "--data-dir", str(data_dir)), script(OLD_RUNS, DATA=data_dir)),
        ("labctl runs --limit 10", labctl("runs", "--limit", "10", "--data-dir", str(data_dir)), None),
        ("labctl show UID", labctl("show", uid[:8], "--data-dir", str(data_dir), "--out", str(out)),
         script(OLD_SHOW, DATA=data_dir, UID=uid[:8], OUT=str(out))),
    ]
    for name, new, old in cases:
        new_time = timed(new)
        old_time = timed(old) if old is not None else None
        if name.startswith("labctl runs ("):
            assert len(new_time[2].splitlines()) == RUNS + 1  # the header and every run
            assert old_time[2].strip() == str(RUNS)
        rows.append((name, new_time[:2], old_time[:2] if old_time else None))
    return rows


def report(rows, built_s: float) -> str:
    lines = [f"labctl commands in a fresh interpreter, data directory of {RUNS} runs (built in {built_s:.0f} s)",
             f"{'':<30}{'wall s':>8}{'cpu s':>8}{'old wall':>10}{'old cpu':>9}{'old/new':>9}"]
    for name, (wall, cpu), old in rows:
        tail = f"{old[0]:>10.2f}{old[1]:>9.2f}{old[0] / wall:>8.1f}x" if old else f"{'':>10}{'':>9}{'':>9}"
        lines.append(f"{name:<30}{wall:>8.2f}{cpu:>8.2f}{tail}")
    lines.append(f"target: each <= {TARGET_S:g} s (issue 15); cpu is the child's user + system time")
    return "\n".join(lines)


@pytest.mark.benchmark
@pytest.mark.timeout(900)
def test_cli_benchmark(tmp_path, short_experiment):
    data_dir, uid, built = build_data_dir(tmp_path, short_experiment)
    rows = run_benchmark(data_dir, uid, tmp_path / "figures")
    print("\n" + report(rows, built))


if __name__ == "__main__":
    import tempfile

    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import SHORT_EXPERIMENT

    with tempfile.TemporaryDirectory() as tmp:
        data, run_uid, seconds = build_data_dir(Path(tmp), SHORT_EXPERIMENT)
        print(report(run_benchmark(data, run_uid, Path(tmp) / "figures"), seconds))
