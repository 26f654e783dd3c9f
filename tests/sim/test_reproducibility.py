"""Same seed, same data, bit for bit: a whole experiment through ``labctl run``, twice.

The experiment is the suite's short one (tests/conftest.py), on configs/lab-sim.yaml: the chamber
and rig are served at the wire from their own threads, as in the demo. The second run starts at
another wall-clock second; every value, and every time relative to its run's start, must match.
"""

import contextlib
import io

import numpy as np
import pytest

from labctl.cli import main
from labctl.storage import Storage

CLOCK_FIELDS = ("time", "timestamp", "sweep_start", "window_start", "window_end")  # session-clock times: compared from the run's start


def run_experiment(text: str, folder, *extra) -> tuple:
    experiment = folder / "experiment.yaml"
    experiment.write_text(text)
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = main(["run", str(experiment), "--data-dir", str(folder / "data"), "--no-plot", *extra])
    return code, buffer.getvalue()


def stored_runs(data_dir, printed: str) -> list[tuple[dict, dict]]:
    """Return (start document, {stream: {field: values}}) of each run printed, in order."""
    uids = [line.split()[0] for line in printed.splitlines() if line.startswith("  ") and "  success  " in line]
    runs = []
    with Storage.open(data_dir) as storage:
        for uid in uids:
            run = storage.catalog[uid]
            start = dict(run.start)
            streams = {}
            for name in run:
                data = run[name].read()
                streams[name] = {key: np.asarray(data[key].values) for key in data.data_vars}
            runs.append((start, streams))
    return runs


def as_session_offsets(field: str, values: np.ndarray, start: float) -> np.ndarray:
    return values - start if field.endswith(CLOCK_FIELDS) and values.dtype.kind == "f" else values


def test_two_runs_with_the_same_seed_are_bit_identical(stored, short_experiment, tmp_path, monkeypatch):
    first_dir, first_printed = stored
    # Start the second run's session clock at another second (and its fractional part elsewhere).
    import labctl.core.clock

    wall = labctl.core.clock.time.time
    monkeypatch.setattr(labctl.core.clock.time, "time", lambda: wall() + 12_345.678)
    code, printed = run_experiment(short_experiment, tmp_path)
    assert code == 0, printed
    first, second = stored_runs(first_dir, first_printed), stored_runs(tmp_path / "data", printed)
    assert [s["plan_name"] for s, _ in first] == [s["plan_name"] for s, _ in second] == [
        "set_temperature", "set_pressure", "rest", "plate"]
    assert first[0][0]["clock_time"] != second[0][0]["clock_time"]
    compared = 0
    for (start_a, streams_a), (start_b, streams_b) in zip(first, second):
        assert start_a["sim_seed"] == start_b["sim_seed"] == 20240117
        assert streams_a.keys() == streams_b.keys()
        for name in streams_a:
            assert streams_a[name].keys() == streams_b[name].keys()
            for field, a in streams_a[name].items():
                b = streams_b[name][field]
                if name != "result":  # its times (plating_time, time_to_short) are durations, not clock readings
                    a, b = as_session_offsets(field, a, start_a["clock_time"]), as_session_offsets(field, b, start_b["clock_time"])
                same = np.array_equal(a, b, equal_nan=a.dtype.kind in "fc")  # nan: a value not determined, in both
                assert a.shape == b.shape and same, f"{start_a['plan_name']} {name} {field}"
                compared += a.size
    assert compared > 10_000  # the hour of plating at 1 s, the spectra, the environment


def test_the_seed_comes_from_the_command_line_then_the_experiment_then_the_lab(short_experiment, tmp_path):
    from labctl.config import load_experiment, load_lab
    from labctl.runner import ExperimentRunner

    path = tmp_path / "seeded.yaml"
    path.write_text(short_experiment.replace("cell:", "seed: 7\ncell:", 1))
    lab_config = load_lab(short_experiment.split("lab: ", 1)[1].splitlines()[0])
    experiment = load_experiment(path, lab=lab_config)

    class Storage:
        assets_dir = tmp_path / "assets"
        callback = staticmethod(lambda name, doc: None)

    for seed, expected in ((None, 7), (11, 11)):
        runner = ExperimentRunner(experiment, lab_config, Storage, seed=seed)
        try:
            assert runner.lab.seed == expected
        finally:
            runner.lab.close()


@pytest.mark.parametrize("seed", ["-1", "1.5", "seven", str(2**63)])
def test_a_bad_seed_on_the_command_line_is_a_usage_error(seed, short_experiment, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit:
        run_experiment(short_experiment, tmp_path, "--seed", seed)
    assert exit.value.code == 2
    assert "--seed: must be a whole number from 0 to 2**63 - 1" in capsys.readouterr().err


def test_a_bad_seed_in_the_experiment_file_is_refused_with_its_line(short_experiment, tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(short_experiment.replace("cell:", "seed: -3\ncell:", 1))
    code = main(["check", str(path), "--no-dry-run"])
    err = capsys.readouterr()
    assert code != 0  # the exit code for an invalid file is the CLI's (h2's) to settle
    message = (err.err + err.out).strip()
    assert "bad.yaml:3: seed:" in message and "greater than or equal to 0" in message
    assert "Traceback" not in message


def test_different_seeds_give_different_cells():
    from devices.sim.cell import CellParameters, SimCell

    factors = {SimCell(CellParameters(), lambda t: 303.15, lambda t: 5e6, np.random.default_rng(s), 0.0).pore_factor
               for s in range(5)}
    assert len(factors) == 5


