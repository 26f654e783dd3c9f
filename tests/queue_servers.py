"""Private servers for the queue tests: Redis, a data server and a rig's RE Manager, each on free loopback ports."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import yaml

CONFIGS = Path(__file__).parent.parent / "configs"
LABCTL = [sys.executable, "-m", "labctl.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Redis:
    """A private redis-server, keeping nothing on disk (a restart comes back empty)."""

    def __init__(self, directory: Path, port: int | None = None):
        self.directory, self.port = directory, port or free_port()
        self.process = None

    def start(self) -> Redis:
        import redis

        binary = shutil.which("redis-server")
        assert binary, "redis-server is missing: `make test` installs it (apt-get install redis-server)"
        self.process = subprocess.Popen([binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                         "--appendonly", "no", "--dir", str(self.directory)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        for _ in range(200):  # bounded: each attempt waits on a socket, not on a timer
            with contextlib.suppress(redis.exceptions.ConnectionError):
                if client.ping():
                    return self
            assert self.process.poll() is None, "redis-server exited at start"
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(0.05)
        raise AssertionError("redis-server did not answer")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


def write_lab(directory: Path, name: str, redis_port: int, uri: str) -> Path:
    """A copy of the simulated lab with its own name, data directory, data server and queue ports."""
    lab = yaml.safe_load((CONFIGS / "lab-sim.yaml").read_text())
    lab["name"] = name
    lab["storage"] = {"data_dir": str(directory / name), "uri": uri}
    lab["queue"] = {"address": f"tcp://127.0.0.1:{free_port()}", "info_address": f"tcp://127.0.0.1:{free_port()}",
                    "redis": f"127.0.0.1:{redis_port}"}
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(lab))
    (directory / name).mkdir(exist_ok=True)
    return path


def write_experiment(directory: Path, lab: Path, name: str, steps: list[dict], cell_id: str = "CELL-1") -> Path:
    experiment = yaml.safe_load((CONFIGS / "plating-overnight.yaml").read_text())
    experiment.update(name=name, lab=str(lab), steps=steps)
    experiment["cell"]["id"] = cell_id
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(experiment))
    return path


class Queue:
    """``labctl queue serve`` of one lab in a subprocess, and a client of it."""

    def __init__(self, lab_path: Path, pace: float, log: Path):
        from labctl.config import load_lab

        self.lab_path, self.pace, self.log = lab_path, pace, log
        self.lab = load_lab(lab_path)
        self.address = self.lab.queue.address
        self.process = None
        self.api = None

    def start(self, open_environment: bool = True) -> Queue:
        from labctl.queue.manager import connect

        with open(self.log, "ab") as log:
            self.process = subprocess.Popen([*LABCTL, "queue", "serve", str(self.lab_path), "--pace", str(self.pace)],
                                            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.api = connect(self.address, timeout=2)
        for _ in range(60):  # each status request waits up to 2 s for the manager to answer
            try:
                self.api.status()
                break
            except Exception:
                assert self.process.poll() is None, self.log.read_text()[-3000:]
        else:
            raise AssertionError("the RE Manager did not answer")
        if open_environment and not self.api.status(reload=True)["worker_environment_exists"]:
            self.api.environment_open()
            self.api.wait_for_idle(timeout=100)
            assert self.api.status(reload=True)["worker_environment_exists"], self.log.read_text()[-3000:]
        return self

    def cell_state(self) -> dict:
        from bluesky_queueserver_api import BFunc

        task = self.api.function_execute(BFunc("cell_state"), run_in_background=True)
        self.api.wait_for_completed_task(task["task_uid"], timeout=10)
        return self.api.task_result(task["task_uid"])["result"]["return_value"]

    def wait_running_closed_circuit(self) -> None:
        """Return once a plan runs with the potentiostat driving the cell (the API polls; each check asks the worker)."""
        self.api.wait_for_condition(lambda status: status["re_state"] == "running", timeout=60)
        for _ in range(100):
            if self.cell_state()["circuit"] == "closed":
                return
        raise AssertionError("no plan drove the cell")

    def stop(self) -> None:
        from labctl.queue.manager import disconnect

        if self.api is not None:
            disconnect(self.api)
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
