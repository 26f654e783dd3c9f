"""The ``labctl`` command line, in process: check, then run -> runs -> show on one data directory."""

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from labctl.cli import build_parser, main
from labctl.core.errors import ConfigError, ExitCode, LabctlError, Unreachable
from labctl.storage import Storage

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
CASES = Path(__file__).resolve().parent / "config_cases"


def test_check_accepts_the_overnight_experiment(capsys):
    # Validation only: tests/test_experiments.py dry-runs this file, and the dry run's printout is
    # checked below on the short experiment (a third of the simulated time).
    assert main(["check", str(CONFIGS / "plating-overnight.yaml"), "--no-dry-run"]) == 0
    out = capsys.readouterr().out
    assert "valid: 4 steps for cell LLZTO-1100C-07 on lab lab-sim" in out
    assert out.splitlines()[1:] == ["  1. set_temperature", "  2. set_pressure", "  3. rest", "  4. plate"]


@pytest.mark.parametrize(
    "case, expected",
    [
        ("exp-out-of-range.yaml", ":11: steps[0].current_density: 250 mA/cm^2 is out of range: allowed > 0 and <= 100 mA/cm^2"),
        ("exp-current-past-limit.yaml", ":12: steps[0].current_density: 50 mA/cm^2 on 0.7854 cm^2 is 39.27 mA"),
    ],
)
def test_check_names_file_line_field_and_range(capsys, case, expected):
    assert main(["check", str(CASES / case)]) == ExitCode.INVALID_FILE
    err = capsys.readouterr().err
    assert err.startswith(f"error: {CASES / case}{expected}")


def test_run_with_an_invalid_file_touches_nothing(capsys, tmp_path):
    assert main(["run", str(CASES / "exp-out-of-range.yaml"), "--data-dir", str(tmp_path / "data")]) == 3
    assert "current_density" in capsys.readouterr().err
    assert not (tmp_path / "data").exists()  # no storage opened, no lab built


def test_run_prints_runs_where_and_why(stored):
    data_dir, out = stored
    assert f"4 of 4 runs stored in {data_dir}" in out
    assert "plate            success" in out
    assert "stable at 30.00 degC" in out and "rest completed after 10 min" in out


def test_runs_json_lists_every_step_with_exit_status_and_reason(stored, capsys):
    data_dir, _ = stored
    assert main(["runs", "--json", "--data-dir", str(data_dir)]) == 0
    runs = json.loads(capsys.readouterr().out)
    assert [r["plan_name"] for r in runs] == ["plate", "rest", "set_pressure", "set_temperature"]  # newest first
    assert {r["cell_id"] for r in runs} == {"LLZTO-CLI-1"}
    assert all(r["exit_status"] == "success" and r["reason"] for r in runs)
    assert runs[0]["num_events"]["potentiostat"] == 3600  # an hour at 1 s


def test_the_plating_run_reads_back_as_xarray(stored):
    data_dir, _ = stored
    with Storage.open(data_dir) as storage:
        (summary,) = [r for r in storage.runs() if r["plan_name"] == "plate"]
        run = storage.catalog[summary["uid"]]
        voltage = run["potentiostat"].read()
        spectra = run["impedance"].read()
    assert voltage["potentiostat_Ewe"].size == 3600
    steps = np.diff(voltage["potentiostat_time"].values)
    # 1 s apart (to the instrument's clock tick) but for the two GEIS sweeps
    assert np.count_nonzero(~np.isclose(steps, 1.0, atol=1e-4)) == 2
    assert np.all(voltage["potentiostat_I"].values < 0)  # plating on the working electrode
    # One spectrum before plating and one after each 20 min segment, arrays over frequency.
    assert spectra["potentiostat_eis_frequency"].shape[0] == 4
    assert spectra["potentiostat_eis_frequency"].shape == spectra["potentiostat_eis_z_real"].shape
    assert spectra["potentiostat_eis_frequency"].values[0, 0] == pytest.approx(7e6)


def test_show_summarises_and_writes_a_png(stored, capsys, tmp_path):
    data_dir, out = stored
    plate_uid = next(line.split()[0] for line in out.splitlines() if " plate " in line)
    assert main(["show", plate_uid[:8], "--data-dir", str(data_dir), "--out", str(tmp_path)]) == 0
    shown = capsys.readouterr().out
    assert "stream    potentiostat: 3600 rows" in shown and "step 4 of sequence" in shown
    png = next(tmp_path.glob("*.png"))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_recover_reports_nothing_pending_after_a_clean_run(stored, capsys):
    data_dir, _ = stored
    assert main(["recover", "--data-dir", str(data_dir)]) == 0
    assert capsys.readouterr().out.strip() == (
        f"0 of 0 runs written in from the journal ({data_dir / 'journal'}); points of journalled pages lost: 0"
    )


REAL_LAB = """\
name: bench-lab
simulated: false
instruments:
  potentiostat:
    kind: biologic-sp200
    address: 192.168.0.10
    library: C:/EC-Lab Development Package/lib/EClib64.dll
    current_limit: 10 mA
    voltage_window: [-10 V, 10 V]
  chamber:
    kind: eurotherm-3200
    address: tcp://127.0.0.1:1
    temperature_range: [-40 degC, 200 degC]
    safe_setpoint: 25 degC
  rig:
    kind: mark10-rig
    address: socket://127.0.0.1:1
    area: 0.785 cm^2
    pressure_range: [0 MPa, 20 MPa]
"""


@pytest.mark.skipif(sys.platform == "win32", reason="the vendor's DLL may be there")
def test_a_real_lab_without_the_vendor_library_stops_before_touching_an_instrument(tmp_path, capsys,
                                                                                   short_experiment):
    (tmp_path / "lab.yaml").write_text(REAL_LAB)
    experiment = tmp_path / "short.yaml"
    experiment.write_text(short_experiment.replace(f"lab: {CONFIGS / 'lab-sim.yaml'}", "lab: lab.yaml"))
    assert main(["check", str(experiment)]) == 0  # a real lab's file is dry-run on its simulated copy
    out = capsys.readouterr().out
    assert "dry run on the simulated lab" in out and "  4. plate" in out and "estimated total: " in out
    assert main(["run", str(experiment), "--data-dir", str(tmp_path / "data")]) == ExitCode.UNREACHABLE
    err = capsys.readouterr().err
    assert "cannot load the EC-Lab library 'C:/EC-Lab Development Package/lib/EClib64.dll'" in err
    assert "Windows DLL" in err


# ---- mistakes: one `error:` line, no traceback, an exit code per kind -----------------------------
def one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert "Traceback" not in captured.err + captured.out
    return lines[0]


def test_a_run_not_stored_and_a_uid_too_short_are_usage_errors(stored, capsys):
    data_dir, _ = stored
    assert main(["show", "deadbeef", "--data-dir", str(data_dir)]) == ExitCode.USAGE
    assert one_error_line(capsys) == (f"error: no run 'deadbeef' in {data_dir} "
                                      f"(`labctl runs --data-dir {data_dir}` lists them)")
    assert main(["show", "9", "--data-dir", str(data_dir)]) == ExitCode.USAGE
    assert "give at least 5 characters" in one_error_line(capsys)


@pytest.mark.parametrize("limit", ["-1", "0", "ten"])
def test_a_bad_option_value_is_one_line_and_exit_code_2(capsys, limit):
    with pytest.raises(SystemExit) as exit:
        main(["runs", "--limit", limit])
    assert exit.value.code == ExitCode.USAGE
    assert one_error_line(capsys).startswith("error: argument --limit: ")


def test_an_unwritable_out_folder_is_named(stored, capsys, tmp_path):
    data_dir, out = stored
    plate_uid = next(line.split()[0] for line in out.splitlines() if " plate " in line)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert main(["export", plate_uid, "--data-dir", str(data_dir), "--out", str(blocker / "exports")]) == ExitCode.USAGE
    assert one_error_line(capsys).startswith(f"error: --out {blocker / 'exports'}: cannot write there: ")


@pytest.mark.parametrize("command", [["runs"], ["show", "deadbeef"], ["report", "deadbeef"], ["export", "deadbeef"],
                                     ["recover"]])
def test_read_commands_need_an_existing_data_directory_and_create_none(capsys, tmp_path, command):
    typo = tmp_path / "dta"
    assert main([*command, "--data-dir", str(typo)]) == ExitCode.UNREACHABLE
    assert one_error_line(capsys).startswith(f"error: {typo}: does not exist (no runs stored there): ")
    assert not typo.exists()
    (tmp_path / "elsewhere").mkdir()
    assert main([*command, "--data-dir", str(tmp_path / "elsewhere")]) == ExitCode.UNREACHABLE
    assert "holds no labctl runs" in one_error_line(capsys)


@pytest.mark.parametrize("error, code", [
    (ConfigError("lab.yaml", 3, "port", "99999 is not a TCP port"), ExitCode.INVALID_FILE),
    (Unreachable("storage at http://x: connection refused"), ExitCode.UNREACHABLE),
    (LabctlError("something the user can fix"), ExitCode.USAGE),
    (OSError(5, "Input/output error", "data/journal"), ExitCode.UNREACHABLE),
    (KeyError("a bug"), ExitCode.INTERNAL),
])
def test_a_subcommand_raising_gets_its_one_liner_and_exit_code(monkeypatch, capsys, error, code):
    from devices.errors import InstrumentLost

    def raising(args):
        raise error

    monkeypatch.setattr("labctl.cli.cmd_plans", raising)
    assert main(["plans"]) == code
    line = one_error_line(capsys)
    assert str(error.args[-1] if isinstance(error, OSError) else error).strip("'") in line
    assert InstrumentLost("rig", "socket://x:1", "no reply").exit_code == ExitCode.UNREACHABLE


def test_version_and_help_with_examples_and_every_option_explained(capsys):
    with pytest.raises(SystemExit) as exit:
        main(["--version"])
    assert exit.value.code == 0 and capsys.readouterr().out.startswith("labctl 0.")
    parser = build_parser()
    assert "examples:" in parser.format_help() and "exit codes:" in parser.format_help()
    subparsers = parser._subparsers._group_actions[0].choices
    for name, sub in subparsers.items():
        assert "exit codes:" in sub.format_help()
        for action in sub._actions:
            assert action.help, f"labctl {name}: {action.option_strings or action.dest} has no help text"


# ---- nothing of labctl outlives its last close ---------------------------------------------------
# Opens every kind of thing that starts threads (a reader's and a writer's storage with their
# embedded servers, a simulated lab with its wire simulators, a RunEngine), closes each, then names
# the threads still alive that would hold the interpreter at exit (not daemons; idle
# concurrent.futures workers end at exit by themselves).
AFTER_CLOSE = """
import sys, threading
import bluesky.plans as bp
from devices.sim.cell import CellParameters
from labctl.core.clock import VirtualClock
from labctl.config import load_lab
from labctl.lab import build_simulated_lab
from labctl.session import make_run_engine
from labctl.storage import Storage

data_dir, lab_file = sys.argv[1:]
with Storage.open(data_dir, live=False, writer="exit-test") as storage:
    clock = VirtualClock()
    lab = build_simulated_lab(load_lab(lab_file), CellParameters(), storage.assets_dir, clock)
    try:
        RE = make_run_engine(clock)
        RE.subscribe(storage.callback)
        RE(bp.count([lab.chamber.temperature]))
    finally:
        lab.close()
    assert storage.flush()
with Storage.open(data_dir) as storage:
    run = storage.catalog[storage.runs()[0]["uid"]]
    assert run["primary"].read()["chamber_temperature"].size == 1
holding = [t.name for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon
           and not t.name.startswith("ThreadPoolExecutor")]
print("holding the interpreter:", holding)
sys.exit(1 if holding else 0)
"""


@pytest.mark.timeout(300)  # a whole interpreter: tiled's server, a simulated lab, a RunEngine (slow on a loaded machine)
def test_no_thread_of_labctl_outlives_the_last_close(tmp_path):
    import subprocess

    with subprocess.Popen([sys.executable, "-c", AFTER_CLOSE, str(tmp_path / "data"), str(CONFIGS / "lab-sim.yaml")],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"}) as child:
        printed = []
        for line in child.stdout:  # up to the report of what is left, printed after the last close
            printed.append(line)
            if line.startswith("holding the interpreter:"):
                break
        # The timeout only catches a hang at exit (a thread holding the interpreter); it times nothing.
        assert child.wait(timeout=120) == 0, "".join(printed)[-3000:]
    assert printed[-1].strip() == "holding the interpreter: []"


def test_runs_read_from_the_catalog_file_are_what_the_server_lists(stored):
    from labctl.storage.catalogfile import catalog_file_runs, pending_runs

    data_dir, _ = stored
    with Storage.open(data_dir) as storage:
        served, pending = storage.runs(), storage.pending()
    assert len(served) == 4
    for limit in (None, 1, 2, 3, 4, 5):
        assert catalog_file_runs(data_dir, limit) == served[:limit]
    assert pending_runs(data_dir) == pending


HEAVY = ("tiled", "bluesky", "databroker", "matplotlib", "rich", "pint", "dask", "scipy")


def test_help_imports_none_of_the_heavy_libraries():
    import subprocess

    code = ("import sys\nfrom labctl.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            f"print(sorted({{name.split('.')[0] for name in sys.modules}} & set({HEAVY!r})))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=100)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
