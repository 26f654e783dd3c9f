"""One rig's queue: the files its RE Manager reads, starting it, and the calls ``labctl`` makes to it.

``labctl queue serve LAB.yaml`` writes, under ``DATA_DIR/queue/``, the permissions file (group
``primary`` for lab members: every plan of the lab and :func:`cell_state`; group ``readonly``:
nothing) and ``existing_plans_and_devices.yaml`` generated from the startup module's namespace
(:mod:`labctl.queue.startup`), checks that every plan of the lab is in it (a plan that failed to
load refuses the start: a queue with no allowed plans would accept nothing), then runs
``start-re-manager`` in the foreground with the lab's Redis and 0MQ addresses (``queue:``
section of the lab file). The manager regenerates the list each time the worker environment opens.
Before it starts, ``SERVED_KEY`` goes into Redis beside the queue: if Redis comes back empty, the
key is gone too, and the client calls here say so (:func:`redis_lost`) instead of acting on a
manager whose counts are stale.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

import yaml

from labctl.core.errors import LabctlError, Unreachable, UsageError

PRIMARY, READONLY = "primary", "readonly"  # primary: queueserver's default group, as its clients use
LIST_FILE = "existing_plans_and_devices.yaml"
PERMISSIONS_FILE = "user_group_permissions.yaml"
STARTUP_MODULE = "labctl.queue.startup"
SERVED_KEY = "labctl_served"  # under the rig's prefix: set by labctl queue serve, gone if Redis restarts empty


class QueueError(LabctlError):
    """The queue refused a request, or its files could not be made (exit code 4: not usable)."""

    exit_code = Unreachable.exit_code


def section(lab_config):
    """The lab file's ``queue`` section, or its defaults."""
    from labctl.config.rigs import QueueSection

    return lab_config.queue or QueueSection()


def permissions() -> dict:
    """The user group permissions: lab members run every plan and read the cell; ``readonly`` nothing."""
    # In queueserver's lists None means "all": read-only is every name forbidden.
    nothing = {"allowed_plans": [None], "forbidden_plans": [":.*"], "allowed_devices": [None],
               "forbidden_devices": [":?.*"], "allowed_functions": [None], "forbidden_functions": [":.*"]}
    return {"user_groups": {
        "root": {"allowed_plans": [None], "forbidden_plans": [":^_"], "allowed_devices": [None],
                 "forbidden_devices": [":^_:?.*"], "allowed_functions": [None], "forbidden_functions": [":^_"]},
        PRIMARY: {"allowed_plans": [":.*"], "allowed_devices": [":?.*:depth=5"], "allowed_functions": ["cell_state"]},
        READONLY: nothing,
    }}


def write_plan_list(lab_config, directory: Path, registry: dict[str, Callable] | None = None) -> Path:
    """Generate ``existing_plans_and_devices.yaml`` from the lab's queue plans and (simulated) devices.

    The devices are built simulated here, so writing the list touches no instrument; they have
    the names and kinds of the real ones. Raises :class:`QueueError` if a plan cannot be described.
    """
    from bluesky_queueserver.manager.profile_ops import (existing_plans_and_devices_from_nspace,
                                                         save_existing_plans_and_devices)

    from labctl.core.clock import VirtualClock
    from labctl.lab import build_simulated_lab, cell_parameters
    from labctl.queue.adapter import queue_plans

    with tempfile.TemporaryDirectory(prefix="labctl-queue-list-") as assets:
        lab = build_simulated_lab(lab_config, cell_parameters(), Path(assets), VirtualClock())
        try:
            namespace = {**{r: d for r, d in lab.devices().items() if d is not None},
                         **queue_plans(lab_config, lab, registry)}
            plans, devices, _, _ = existing_plans_and_devices_from_nspace(nspace=namespace)
        except Exception as error:  # queueserver's own message says which plan and why
            raise QueueError(f"refusing to start the queue: the plan list failed to load: {error}") from None
        finally:
            lab.close()
    directory.mkdir(parents=True, exist_ok=True)
    save_existing_plans_and_devices(existing_plans=plans, existing_devices=devices, file_dir=str(directory),
                                    file_name=LIST_FILE, overwrite=True)
    return check_plan_list(directory / LIST_FILE, registry)


def check_plan_list(path: Path, registry: dict[str, Callable] | None = None) -> Path:
    """Raise :class:`QueueError` unless ``path`` lists every plan of ``registry`` (default ``plans.PLANS``)."""
    from bluesky_queueserver.manager.profile_ops import load_existing_plans_and_devices

    if registry is None:
        from plans import PLANS as registry
    try:
        plans, _ = load_existing_plans_and_devices(str(path))
    except Exception as error:
        raise QueueError(f"refusing to start the queue: {path}: the plan list failed to load: {error}") from None
    missing = sorted(set(registry) - set(plans or {}))
    if missing:
        raise QueueError(f"refusing to start the queue: {path} lacks the plans {', '.join(missing)}")
    return path


def prepare(lab_config, data_dir: Path, registry: dict[str, Callable] | None = None) -> Path:
    """Write the permissions file and the plan list under ``data_dir/queue``; return that folder."""
    directory = Path(data_dir) / "queue"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / PERMISSIONS_FILE).write_text("# Written by labctl queue serve.\n" + yaml.safe_dump(permissions()))
    write_plan_list(lab_config, directory, registry)
    return directory


def manager_command(lab_config, lab_path: Path, data_dir: Path, directory: Path,
                    pace: float | None = None) -> tuple[list[str], dict[str, str]]:
    """The ``start-re-manager`` command line and environment for this lab."""
    queue = section(lab_config)
    executable = shutil.which("start-re-manager", path=str(Path(sys.executable).parent)) or "start-re-manager"
    argv = [executable, "--startup-module", STARTUP_MODULE,
            "--existing-plans-devices", str(directory / LIST_FILE),
            "--update-existing-plans-devices", "ENVIRONMENT_OPEN",
            "--user-group-permissions", str(directory / PERMISSIONS_FILE),
            "--redis-addr", queue.redis, "--redis-name-prefix", redis_prefix(lab_config),
            "--zmq-control-addr", queue.address,
            "--zmq-info-addr", queue.info_address, "--zmq-publish-console", "ON"]
    env = {**os.environ, "LABCTL_QUEUE_LAB": str(Path(lab_path).resolve()),
           "LABCTL_QUEUE_DATA_DIR": str(Path(data_dir).resolve())}
    if pace is not None:
        env["LABCTL_QUEUE_PACE"] = str(pace)
    return argv, env


def redis_prefix(lab_config) -> str:
    """The prefix of this rig's keys in Redis: one Redis can hold every rig's queue."""
    return f"labctl_{lab_config.name}"


def _redis(lab_config):
    import redis

    host_port, _, db = section(lab_config).redis.partition("/")
    host, _, port = host_port.partition(":")
    return redis.Redis(host=host, port=int(port or 6379), db=int(db or 0), socket_connect_timeout=2, socket_timeout=2)


def mark_served(lab_config, lab_path: Path) -> None:
    """Put this rig's ``SERVED_KEY`` in Redis as its RE Manager starts (``labctl queue serve``).

    A Redis restarted empty loses it with the queue, so :func:`redis_lost` can tell.
    """
    import redis

    client = _redis(lab_config)
    try:
        client.set(redis_prefix(lab_config) + SERVED_KEY, json.dumps({"lab": str(Path(lab_path).resolve())}))
    except redis.RedisError as error:
        raise QueueError(f"queue: Redis at {section(lab_config).redis} ({lab_config.path}, queue.redis): {error}") from None
    finally:
        client.close()


def redis_lost(lab_config) -> str | None:
    """Why the rig's Redis no longer holds what its running RE Manager keeps there, or None if it does.

    queueserver 0.0.25 keeps the queue and history in Redis and counts them in memory; after a
    Redis restart without its data, the manager reports the old counts and fails on the next item.
    """
    import redis

    address, client = section(lab_config).redis, _redis(lab_config)
    try:
        if client.get(redis_prefix(lab_config) + SERVED_KEY) is not None:
            return None
        return (f"queue: Redis at {address} has lost this rig's queue since `labctl queue serve` started "
                f"(restarted empty?): the RE Manager's counts are stale and its queued items are gone; restart "
                f"`labctl queue serve {lab_config.path}` and submit the files again")
    except redis.RedisError as error:
        return f"queue: Redis at {address} does not answer ({error}): the queue cannot be read or changed"
    finally:
        client.close()


def require_redis(lab_config) -> None:
    """Raise :class:`QueueError` if the rig's Redis lost its queue (:func:`redis_lost`); labs without a queue section pass."""
    problem = redis_lost(lab_config) if lab_config.queue is not None else None
    if problem:
        raise QueueError(problem)


def require_data_server(lab_config, data_dir: Path) -> None:
    """Refuse a queue that would start an embedded data server inside its worker (it kept the worker alive)."""
    from labctl.locks import SERVER_STATE, live_holder

    if lab_config.storage.uri is None and live_holder(Path(data_dir) / SERVER_STATE, others_only=False) is None:
        raise UsageError(f"the queue writes to a data server: set storage.uri in {lab_config.path} or start "
                         f"`labctl serve {data_dir}` first")


# ---- the client side ----------------------------------------------------------------------------
def connect(address: str, timeout: float = 5.0):
    """A client of the RE Manager at ``address`` (0MQ), as the current user in group ``primary``."""
    from bluesky_queueserver_api.zmq import REManagerAPI

    api = REManagerAPI(zmq_control_addr=address, timeout_recv=timeout)
    api.user, api.user_group = getpass.getuser(), PRIMARY
    return api


def disconnect(api) -> None:
    """Close a client of :func:`connect` and its three 0MQ contexts.

    The API's ``close`` closes the control socket only; its console and system-info monitors each
    open a subscriber with its own context at construction, left to the garbage collector.
    """
    api.close()
    sockets = [getattr(getattr(monitor, "_rco", None), "_socket", None)
               for monitor in (getattr(api, "_console_monitor", None), getattr(api, "_system_info_monitor", None))]
    for socket in sockets:
        if socket is not None:
            socket.close()
            socket.context.term()
    context = getattr(getattr(api, "_client", None), "_ctx", None)
    if context is not None:
        context.term()


def call(api, method: str, *args, **kwargs) -> Any:
    """Call ``api.method``; turn a refusal or no answer into a one-line :class:`QueueError`."""
    try:
        return getattr(api, method)(*args, **kwargs)
    except Exception as error:  # the API's RequestFailedError carries the manager's message
        name = type(error).__name__
        raise QueueError(f"queue: {method}: {'no answer from the RE Manager' if 'Timeout' in name else error}") from None


def queue_mode(api) -> None:
    """Run the queue past a failed item (queueserver's ``ignore_failures``): a failed step stops only its own file.

    The worker skips the rest of a failed file (:mod:`labctl.queue.sequences`). The mode is kept
    in Redis; ``labctl submit`` and ``labctl queue start`` set it each time, so a Redis that came
    back empty gets it again.
    """
    call(api, "queue_mode_set", ignore_failures=True)


def experiment_items(experiment, lab_config, path: Path, sequence_id: str) -> list[dict]:
    """One queue item per step (and per repeat) of a checked experiment, its metadata in ``meta``."""
    cell = experiment.to_metadata()
    guards = experiment.guards.model_dump() if experiment.guards is not None else None
    items = []
    for index, step in enumerate(experiment.steps):
        for repeat in range(step.repeat):
            meta = {"sequence_id": sequence_id, "experiment": experiment.name, "experiment_file": str(path),
                    "step_index": index, "step_label": step.label or step.plan, "repeat_index": repeat,
                    "cell": cell, "lab": lab_config.name}
            items.append({"item_type": "plan", "name": step.plan,
                          "kwargs": {**step.kwargs, "cell": cell, "guards": guards}, "meta": meta})
    return items


def submit(experiment, lab_config, path: Path, address: str) -> tuple[str, list[dict]]:
    """Add the experiment's steps to the queue at ``address`` as one batch (all or none); return (sequence id, items)."""
    import uuid

    require_redis(lab_config)
    members = section(lab_config).members
    if members and getpass.getuser() not in members:
        raise UsageError(f"{getpass.getuser()} is not among the lab members of {lab_config.path} (queue.members)")
    sequence_id = str(uuid.uuid4())
    api = connect(address)
    try:
        queue_mode(api)
        response = call(api, "item_add_batch", experiment_items(experiment, lab_config, path, sequence_id))
    finally:
        disconnect(api)
    return sequence_id, response["items"]
