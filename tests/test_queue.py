"""The queue's adapter, items and files, without a queue running (see test_queue_live.py for one)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("bluesky_queueserver")

from bluesky_queueserver.manager.profile_ops import _prepare_plans, validate_plan  # noqa: E402

from labctl.cli import main  # noqa: E402
from labctl.config import load_experiment, load_lab  # noqa: E402
from labctl.queue.adapter import cell_from_metadata, queue_plans  # noqa: E402
from labctl.queue.manager import (LIST_FILE, QueueError, check_plan_list, experiment_items,  # noqa: E402
                                  write_plan_list)

CONFIGS = Path(__file__).parent.parent / "configs"
LAB = load_lab(CONFIGS / "lab-sim.yaml")
EXPERIMENT = load_experiment(CONFIGS / "plating-overnight.yaml", lab=LAB)
PLANS = _prepare_plans(queue_plans(LAB, None), existing_devices={})
CELL = EXPERIMENT.to_metadata()


def accepted(name: str, **kwargs) -> bool:
    """Whether queueserver's own validation takes an item (as an item added by any client would be)."""
    ok, _ = validate_plan({"item_type": "plan", "name": name, "kwargs": {"cell": CELL, **kwargs}},
                          allowed_plans=PLANS, allowed_devices={})
    return ok


def test_every_plan_is_described_for_the_queue():
    from plans import PLANS as registry

    assert set(PLANS) == set(registry)
    assert all(p["annotation"]["type"] != "" for plan in PLANS.values() for p in plan["parameters"] if "annotation" in p)


@settings(max_examples=60, deadline=None)
@given(st.floats(min_value=-2000, max_value=2000, allow_nan=False))
def test_current_density_validates_in_si_within_the_units_bounds(value):
    # plate: current_density is Unit("mA/cm^2", gt=0, le=100): [0, 1000] A/m^2 in the queue (inclusive bounds)
    assert accepted("plate", current_density=value) == (0 <= value <= 1000)


@settings(max_examples=60, deadline=None)
@given(st.floats(min_value=100, max_value=700, allow_nan=False))
def test_temperature_is_bounded_by_the_chambers_range(value):
    low, high = LAB.instruments.chamber.temperature_range  # -40..200 degC, inside the plan's own bounds
    assert accepted("set_temperature", temperature=value) == (low <= value <= high)


def test_the_issues_examples():
    assert accepted("plate", current_density=5.0)
    assert not accepted("plate", current_density="lots")
    assert not accepted("plate", current_density=-5.0)
    assert not accepted("plate", current_density=5000.0)
    assert not accepted("plate", current_density=5.0, not_an_argument=1)


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_cell_metadata_round_trips(path):
    document = yaml.safe_load(path.read_text())
    if "cell" not in document:
        pytest.skip("a lab file")
    experiment = load_experiment(path)
    assert cell_from_metadata(experiment.to_metadata()).to_metadata() == experiment.to_metadata()


def test_items_one_per_step_and_repeat_with_their_metadata(tmp_path):
    items = experiment_items(EXPERIMENT, LAB, Path("exp.yaml"), "seq-1")
    assert [item["name"] for item in items] == [step.plan for step in EXPERIMENT.steps for _ in range(step.repeat)]
    for index, item in enumerate(items):
        assert item["meta"]["sequence_id"] == "seq-1" and item["meta"]["experiment_file"] == "exp.yaml"
        assert item["meta"]["step_index"] == index and item["meta"]["cell"]["id"] == EXPERIMENT.cell.id
        assert accepted(item["name"], **{k: v for k, v in item["kwargs"].items() if k != "cell"})


def test_plan_list_is_written_and_checked(tmp_path):
    path = write_plan_list(LAB, tmp_path)
    assert path == tmp_path / LIST_FILE and check_plan_list(path) == path


def test_a_plan_that_cannot_be_described_refuses_the_start(tmp_path):
    def unlisted(*, x: float = float("nan"), md=None):  # a default queueserver cannot restate
        yield from ()

    with pytest.raises(QueueError, match="plan list failed to load"):
        write_plan_list(LAB, tmp_path, registry={"unlisted": unlisted})


@pytest.mark.parametrize("content", ["", "existing_plans: {}\nexisting_devices: {}\n", "{not yaml"])
def test_a_plan_list_lacking_plans_refuses_the_start(tmp_path, content):
    (tmp_path / LIST_FILE).write_text(content)
    with pytest.raises(QueueError, match="refusing to start"):
        check_plan_list(tmp_path / LIST_FILE)


def test_submit_checks_the_file_as_check_does(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text((CONFIGS / "plating-overnight.yaml").read_text().replace("0.5 mA/cm^2", "lots")
                   .replace("lab: lab-sim.yaml", f"lab: {CONFIGS / 'lab-sim.yaml'}"))
    assert main(["submit", str(bad), "--queue", "tcp://127.0.0.1:1"]) == main(["check", str(bad), "--no-dry-run"]) == 3
    errors = [line for line in capsys.readouterr().err.splitlines() if line]
    assert errors[0] == errors[1] and errors[0].startswith(f"error: {bad}:")


def test_no_manager_is_one_error_line(capsys):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert main(["queue", "status", "--queue", f"tcp://127.0.0.1:{port}"]) == 4
    assert capsys.readouterr().err.strip() == "error: queue: status: no answer from the RE Manager"


# ---- a failed step stops only its own file (labctl.queue.sequences), on a real RunEngine ---------
OUTCOMES = ("ok", "raise", "fail")  # a step that ends well, raises (a device fault), or closes its run as failed


def step(outcome: str):
    import bluesky.plan_stubs as bps

    yield from bps.open_run()
    if outcome == "raise":
        raise RuntimeError("chamber at tcp://10.0.0.5:502: connection lost")
    yield from bps.close_run(exit_status="fail" if outcome == "fail" else "success",
                             reason="voltage limit of the potentiostat reached" if outcome == "fail" else "")


@pytest.fixture(scope="module")
def run_engine():
    from labctl.core.clock import VirtualClock
    from labctl.queue.worker_env import queue_run_engine

    return queue_run_engine(VirtualClock())


def run_queue(RE, sequences, files: list[list[str]]) -> list[str]:
    """Run every item of ``files`` in queue order as the worker would; return how each ended."""
    from labctl.queue.sequences import StepFailed, StepSkipped

    ended = []
    for number, outcomes in enumerate(files):
        for index, outcome in enumerate(outcomes):
            meta = {"sequence_id": f"seq-{number}", "experiment_file": f"file-{number}.yaml", "step_index": index,
                    "step_label": outcome}
            try:
                RE(sequences.run(RE, lambda: step(outcome)), **meta)
                ended.append("completed")
            except StepSkipped:
                ended.append("skipped")
            except (StepFailed, RuntimeError):
                ended.append("failed")
    return ended


def expected(files: list[list[str]]) -> list[str]:
    ended = []
    for outcomes in files:
        failed = False
        for outcome in outcomes:
            ended.append("skipped" if failed else "completed" if outcome == "ok" else "failed")
            failed = failed or outcome != "ok"
    return ended


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.sampled_from(OUTCOMES), min_size=1, max_size=4), min_size=1, max_size=4))
def test_a_failed_step_skips_the_rest_of_its_file_only(run_engine, files):
    import tempfile

    from labctl.queue.sequences import Sequences

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "failed-sequences.jsonl"
        assert run_queue(run_engine, Sequences(path), files) == expected(files)
        # A restarted worker reads what failed: every later item of a failed file is still skipped.
        again = run_queue(run_engine, Sequences(path), files)
        failed = {number for number, outcomes in enumerate(files) if set(outcomes) != {"ok"}}
        assert again == [("skipped" if number in failed else "completed")
                         for number, outcomes in enumerate(files) for outcome in outcomes]


def test_a_skipped_step_names_the_step_that_failed(run_engine, tmp_path):
    from labctl.queue.sequences import Sequences, StepSkipped

    sequences = Sequences(tmp_path / "failed.jsonl")
    run_queue(run_engine, sequences, [["ok", "fail"]])
    with pytest.raises(StepSkipped, match=r"skipped: step 2 \(fail\) of file-0.yaml failed: voltage limit"):
        sequences.refuse_if_failed({"sequence_id": "seq-0"})


def test_an_abort_asked_for_is_not_a_failed_file(run_engine, tmp_path):
    import bluesky.plan_stubs as bps
    from bluesky.utils import RunEngineInterrupted

    from labctl.queue.sequences import Sequences

    def pausing():
        yield from bps.open_run()
        yield from bps.checkpoint()
        yield from bps.pause()
        yield from bps.close_run()

    sequences = Sequences(tmp_path / "failed.jsonl")
    with pytest.raises(RunEngineInterrupted):
        run_engine(sequences.run(run_engine, pausing), sequence_id="seq-a", step_index=0)
    run_engine.abort(reason="asked for")
    assert sequences.failed == {}
    assert run_queue(run_engine, sequences, [["ok"]]) == ["completed"]


def test_an_item_without_a_sequence_runs_as_it_is(run_engine, tmp_path):
    from labctl.queue.sequences import Sequences

    sequences = Sequences(tmp_path / "failed.jsonl")
    with pytest.raises(RuntimeError):
        run_engine(sequences.run(run_engine, lambda: step("raise")))
    assert sequences.failed == {} and not (tmp_path / "failed.jsonl").exists()
