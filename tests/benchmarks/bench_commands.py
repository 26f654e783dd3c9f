"""The commands a person types, this tree against an earlier revision, side by side in one run.

Each case runs in a fresh interpreter, alternately in this tree (A) and in a copy of the baseline
revision (B: ``git archive``, run with this tree's virtualenv, the copy first on ``sys.path``),
A B A B ..., ``ROUNDS`` times each. The medians of wall and CPU time (the child's user + system:
the steadier figure on a machine shared with other work) are printed with the median of the
pairwise ratios A/B, so the ratio holds while the machine's load drifts. Targets (issue 15):
``check``, ``runs``, ``show`` and the dry run at most 1 s; a simulated 24 h plating day stored in
at most 2 s.

Cases: ``labctl --help``; ``check --no-dry-run`` and ``check`` (the dry run) of the overnight file;
``runs`` and ``show`` on tests/benchmarks/bench_cli.py's data directory of 1,000 runs; a simulated
plating day (bench_plating.py's plan, ``DAY_HOURS`` hours, stored batched and not stored), timed
inside the child from the plan's start to the storage's flush, so the interpreter's start is not in it.

Measured 2026-12-02 by this file (ROUNDS=3, DAY_HOURS=6) on the 2-core machine under a load
average of 12-15 (other sessions running, so wall times are several times a quiet machine's),
branch h6 against 8f9e27e, CPU s A vs B (A/B): ``--help`` 0.12 vs 0.11; ``check --no-dry-run``
1.82 vs 3.54 (0.51); ``check`` with the dry run 6.10 vs 6.83 (0.88); ``runs`` of 1,000 runs 0.92
vs 1.20 (0.76); ``show`` 16.6 vs 16.0 (1.06: the embedded tiled server's start, its HTTP reads
and imports, unchanged); the day not stored 15.6 vs 18.3 (0.83), stored batched 24.7 vs 21.9
(1.13). The stored day's ratio is within this load's noise: other paired runs of it gave 0.91-1.15,
so a change there is not determined.

Run it with ``python tests/benchmarks/bench_commands.py [BASELINE_REV]`` (default ``HEAD~1``) or
``make bench`` (``BASELINE_REV=...``);
``ROUNDS=N`` for more pairs, ``DATA_DIR=... RUN_UID=...`` to reuse a data directory bench_cli built,
``BASELINE_DIR=...`` for a baseline tree already there.
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ROUNDS = int(os.environ.get("ROUNDS", "5"))
DAY_HOURS = float(os.environ.get("DAY_HOURS", "24"))
TARGET_S = 1.0
TARGET_DAY_S = 2.0
# A day of plating, in whichever tree the child runs in: that tree's plan, devices and storage.
DAY = """
import sys, tempfile, time
from pathlib import Path
sys.path.insert(0, "tests/benchmarks")
import bench_plating as bp
hours, live = float(sys.argv[1]), {"batched": False, "unstored": None}[sys.argv[2]]
plan = lambda lab: bp.plate(lab.potentiostat, lab.chamber, lab.rig, current_density=5.0,
    electrode_area=bp.CELL.electrode_area, sample_interval=1.0, geis_interval=900.0, geis_f_max=7e6,
    geis_f_min=0.5, geis_amplitude=0.5, max_duration=hours * 3600)
with tempfile.TemporaryDirectory() as tmp:
    result = bp.measure(Path(tmp), plan, live=live)
print(result["day_wall_s"], result["wall_s"])
"""


def baseline_tree(rev: str, folder: Path) -> Path:
    """A copy of revision ``rev`` of this repository in ``folder``."""
    archive = folder / "baseline.tar"
    subprocess.run(["git", "-C", str(ROOT), "archive", "-o", str(archive), rev], check=True)
    tree = folder / "baseline"
    with tarfile.open(archive) as tar:
        tar.extractall(tree, filter="data")
    return tree


def timed(argv: list[str], cwd: Path) -> tuple[float, float, str]:
    """Run ``argv`` in ``cwd`` in a fresh process; return (wall s, its CPU s, what it printed)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} in {cwd} failed ({done.returncode}): {done.stderr[-2000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), done.stdout


def cases(data_dir: Path, uid: str, out: Path) -> list[tuple[str, list[str]]]:
    labctl = [sys.executable, "-m", "labctl.cli"]
    overnight = "configs/plating-overnight.yaml"
    return [
        ("labctl --help", [*labctl, "--help"]),
        ("labctl check --no-dry-run", [*labctl, "check", overnight, "--no-dry-run"]),
        ("labctl check (dry run)", [*labctl, "check", overnight]),
        ("labctl runs (1,000 runs)", [*labctl, "runs", "--data-dir", str(data_dir)]),
        ("labctl show UID", [*labctl, "show", uid[:8], "--data-dir", str(data_dir), "--out", str(out)]),
        (f"plating day, {DAY_HOURS:g} h, batched *", [sys.executable, "-c", DAY, str(DAY_HOURS), "batched"]),
        (f"plating day, {DAY_HOURS:g} h, not stored *", [sys.executable, "-c", DAY, str(DAY_HOURS), "unstored"]),
    ]


def compare(argv: list[str], a: Path, b: Path) -> dict[str, float]:
    """Medians of A's and B's wall and CPU, and of the pairwise ratios, over ``ROUNDS`` pairs A B."""
    day = argv[1] == "-c"
    pairs = []
    for _ in range(ROUNDS):
        (wall_a, cpu_a, out_a), (wall_b, cpu_b, out_b) = timed(argv, a), timed(argv, b)
        if day:  # the day's own wall time (plan to flush), scaled to 24 h, as the child printed it
            wall_a, wall_b = float(out_a.split()[0]), float(out_b.split()[0])
        pairs.append((wall_a, cpu_a, wall_b, cpu_b))
    med = lambda i: statistics.median(p[i] for p in pairs)  # noqa: E731
    ratio = lambda i, j: statistics.median(p[i] / p[j] for p in pairs)  # noqa: E731
    return {"wall_a": med(0), "cpu_a": med(1), "wall_b": med(2), "cpu_b": med(3),
            "wall_ratio": ratio(0, 2), "cpu_ratio": ratio(1, 3)}


def report(rows: list[tuple[str, dict[str, float]]], rev: str) -> str:
    lines = [f"this tree (A) vs {rev} (B), {ROUNDS} pairs A B in turn, medians; fresh interpreter per run",
             f"{'':<34}{'A wall':>8}{'B wall':>8}{'A/B':>7}{'A cpu':>8}{'B cpu':>8}{'A/B':>7}"]
    for name, r in rows:
        lines.append(f"{name:<34}{r['wall_a']:>8.2f}{r['wall_b']:>8.2f}{r['wall_ratio']:>7.2f}"
                     f"{r['cpu_a']:>8.2f}{r['cpu_b']:>8.2f}{r['cpu_ratio']:>7.2f}")
    lines += ["* wall: the day's own time from the plan's start to the storage's flush, scaled to 24 h;"
              " cpu: the whole child's",
              f"targets (issue 15): commands <= {TARGET_S:g} s; a day stored <= {TARGET_DAY_S:g} s"]
    return "\n".join(lines)


def run_benchmark(rev: str, folder: Path, short_experiment: str) -> str:
    from bench_cli import build_data_dir

    baseline = Path(os.environ["BASELINE_DIR"]) if os.environ.get("BASELINE_DIR") else baseline_tree(rev, folder)
    if os.environ.get("DATA_DIR"):
        data_dir, uid = Path(os.environ["DATA_DIR"]), os.environ["RUN_UID"]
    else:
        data_dir, uid, _ = build_data_dir(folder, short_experiment)
    rows = [(name, compare(argv, ROOT, baseline)) for name, argv in cases(data_dir, uid, folder / "figures")]
    return report(rows, rev)


@pytest.mark.benchmark
@pytest.mark.timeout(3600)
def test_commands_benchmark(tmp_path, short_experiment):
    print("\n" + run_benchmark(os.environ.get("BASELINE_REV", "HEAD~1"), tmp_path, short_experiment))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "tests" / "benchmarks"))
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import SHORT_EXPERIMENT

    with tempfile.TemporaryDirectory() as tmp:
        print(run_benchmark(sys.argv[1] if len(sys.argv) > 1 else "HEAD~1", Path(tmp), SHORT_EXPERIMENT))
