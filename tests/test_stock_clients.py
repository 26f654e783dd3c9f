"""Stock clients read labctl's runs: the tiled client from another process, databroker's v1/v2 views,
runs started by hand in the shell, and the README's "For bluesky users" snippets."""

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from labctl.storage import Storage

README = Path(__file__).resolve().parents[1] / "README.md"

# Only tiled, bluesky-tiled-plugins and databroker: what another group's analysis machine has.
STOCK_CLIENT = textwrap.dedent('''
    import json, sys
    from tiled.client import from_uri
    from tiled.queries import Key
    from bluesky_tiled_plugins.queries import TimeRange

    uri, cell, since, until = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
    root = from_uri(uri, trust_env=False)
    runs = root["runs"]
    of_cell = runs.search(Key("start.cell.id") == cell)
    plating = of_cell.search(Key("start.plan_name") == "plate")
    in_window = runs.search(TimeRange(since=since, until=until))
    shorted = runs.search(Key("stop.result.ended_by") == "short")
    run = plating.values().first()
    streams = {name: dict(run[name].read().sizes) for name in run}
    documents = list(run.documents())
    v1 = runs.v1[run.start["uid"]]
    print(json.dumps({
        "of_cell": len(of_cell), "plating": len(plating), "in_window": len(in_window), "shorted": len(shorted),
        "uid": run.start["uid"], "result": run.stop["result"], "streams": streams,
        "ewe_mean": float(run["potentiostat"].read()["potentiostat_Ewe"].mean()),
        "names": [name for name, _ in documents],
        "v1_primary_rows": len(v1.table("primary")), "v1_plan": v1.start["plan_name"],
        "v2_streams": sorted(runs.v2[run.start["uid"]]),
    }))
''')


def test_the_stock_tiled_client_in_another_process_finds_reads_and_replays_runs(plating_run):
    data_dir, uid = plating_run
    with Storage.open(data_dir) as storage:  # serves data_dir as labctl's embedded server does
        runs = storage.runs()
        starts = sorted(storage.catalog[r["uid"]].start["time"] for r in runs)
        rows = storage.catalog[uid]["potentiostat"].read()["potentiostat_Ewe"]
        # the steps' start times, on the session clock: the rest starts 10 simulated minutes before plating
        since, until = starts[-2] - 1, starts[-1] + 1
        out = subprocess.run([sys.executable, "-c", STOCK_CLIENT, storage.uri, "LLZTO-CLI-1", str(since), str(until)],
                             capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout)
    assert (found["of_cell"], found["plating"], found["in_window"], found["shorted"]) == (4, 1, 2, 0)
    assert found["uid"] == uid and found["result"]["ended_by"] == "time"
    assert starts[-1] - starts[-2] == pytest.approx(600, abs=1)  # the 10 min rest, on the session clock
    assert set(found["streams"]) == {"potentiostat", "primary", "impedance", "impedance_fit", "environment", "result"}
    assert found["streams"]["potentiostat"]["time"] == 3600
    assert found["ewe_mean"] == pytest.approx(float(rows.mean()))
    names = found["names"]
    assert names[0] == "start" and names[-1] == "stop"
    assert {"descriptor", "event", "stream_resource", "stream_datum"} <= set(names)
    assert found["v1_plan"] == "plate" and found["v1_primary_rows"] == 60
    assert found["v2_streams"] == sorted(found["streams"])
    # what `labctl runs --json` prints: each plan's result, and starts on the session clock
    by_plan = {run["plan_name"]: run for run in runs}
    plating = by_plan["plate"]["result"]
    assert plating["ended_by"] == "time" and plating["plated_capacity"] == pytest.approx(18000, rel=1e-3)  # C/m^2
    assert plating["time_to_short"] is None and plating["reason"] == by_plan["plate"]["reason"]
    assert by_plan["rest"]["result"]["ended_by"] == "completed"
    assert by_plan["set_temperature"]["result"]["reached"] == pytest.approx(303.15, abs=0.5)
    assert by_plan["rest"]["start"] < by_plan["plate"]["start"]


@pytest.fixture(scope="module")
def shell(tmp_path_factory):
    """A shell session on the simulated lab, its runs on cell SHELL-1."""
    from labctl.shell import open_session

    data_dir = tmp_path_factory.mktemp("shell") / "data"
    ns = open_session(README.parent / "configs" / "lab-sim.yaml", data_dir, cell="SHELL-1")
    yield ns, data_dir
    ns["lab"].close()
    ns["storage"].close()


def test_runs_started_by_hand_carry_the_cell_and_lab_and_are_found_like_yaml_runs(shell):
    ns, data_dir = shell
    RE, plans = ns["RE"], ns["plans"]
    assert RE.md["cell"] == {"id": "SHELL-1"} and RE.md["lab"] == "lab-sim"
    (uid,) = RE(plans.rest(ns["potentiostat"], duration=60.0, sample_interval=10.0)).run_start_uids
    ns["storage"].flush()
    found = ns["storage"].search_cell("SHELL-1")
    assert list(found) == [uid]
    start = found[uid].start
    assert start["simulated"] is True and start["plan_args_units"]["duration"] == "s"
    assert [run["cell_id"] for run in ns["storage"].runs()] == ["SHELL-1"]


def bluesky_users_snippets() -> list[str]:
    """The Python code blocks of the README's "For bluesky users" section, in order."""
    text = README.read_text()
    section = text.split("## For bluesky users", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_the_readme_for_bluesky_users_snippets_run(shell, capsys):
    ns, _ = shell
    snippets = bluesky_users_snippets()
    assert len(snippets) >= 2
    namespace = dict(ns)
    for snippet in snippets:
        exec(compile(snippet, "README.md (For bluesky users)", "exec"), namespace)
    out = capsys.readouterr().out
    assert "potentiostat_ewe" in out and "impedance_fit_r_bulk" in out
