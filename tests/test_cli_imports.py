"""What ``labctl check --no-dry-run`` imports: nothing it does not use (issue 15: commands that answer at once).

Each heavy package below costs a fresh interpreter 0.3-1 s on a quiet 2-core machine; the check
of a file needs none of them (the fits, the storage and the dry run import them when they run).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOT_NEEDED = ("scipy.optimize", "scipy.signal", "labctl.core.analysis", "dask", "tiled", "matplotlib", "labctl.storage")
# Checks every file in one fresh interpreter; prints per file its exit code and what it imported so far.
PROBE = """
import contextlib, io, sys
from labctl.cli import main
heavy, files = sys.argv[1].split(","), sys.argv[2:]
for path in files:
    with contextlib.redirect_stdout(io.StringIO()):
        code = main(["check", path, "--no-dry-run"])
    print(path, code, *sorted(name for name in heavy if name in sys.modules))
"""


def test_check_imports_none_of_the_heavy_packages():
    experiments = sorted(str(p) for p in (ROOT / "configs").glob("*.yaml") if not p.name.startswith("lab-"))
    assert len(experiments) >= 6  # every plan's example file
    done = subprocess.run([sys.executable, "-c", PROBE, ",".join(NOT_NEEDED), *experiments],
                          capture_output=True, text=True, cwd=ROOT, check=True)
    assert done.stdout.splitlines() == [f"{path} 0" for path in experiments]
