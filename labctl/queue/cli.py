"""``labctl queue ...`` and ``labctl submit``: registered by :func:`add_commands`, libraries imported in the handlers."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

ACTIONS = {  # labctl queue ACTION: what it does (the manager's calls)
    "status": "the manager, the worker environment, the RunEngine and the queue's length",
    "start": "open the worker environment if closed, then start the queue (queue_start)",
    "stop": "stop the queue after the running item (queue_stop); --now: pause, then stop the plan (re_stop)",
    "pause": "pause the running plan now (re_pause immediate): the cell goes to open circuit",
    "resume": "resume the paused plan (re_resume)",
    "abort": "pause, then abort the plan (re_abort): its cleanup runs, the cell stays at open circuit",
    "halt": "pause, then halt the plan (re_halt): no cleanup, the pause left the cell at open circuit",
    "history": "the items run so far, with their experiment, step and how they ended",
}


def add_commands(sub, formatter, epilog: str) -> None:
    """Add ``queue`` and ``submit`` to the ``labctl`` subparsers ``sub``."""
    what = "a queue per rig on bluesky-queueserver: serve it, and control it"
    queue = sub.add_parser("queue", help=what, description=what, formatter_class=formatter,
                           epilog="examples:\n  labctl queue serve configs/lab-two-rigs/rig-a.yaml\n"
                                  "  labctl queue start --lab configs/lab-two-rigs/rig-a.yaml\n\n" + epilog)
    actions = queue.add_subparsers(dest="action", required=True, parser_class=type(queue), metavar="ACTION",
                                   help="what to do with the rig's queue")
    p = actions.add_parser("serve", help="start the RE Manager of a lab (foreground; Ctrl-C stops it)")
    p.add_argument("lab_file", type=Path, metavar="LAB.yaml", help="the rig's lab file (with its queue section)")
    p.add_argument("--data-dir", type=Path, metavar="DIR", help="the rig's data directory (default: storage.data_dir)")
    p.add_argument("--pace", type=float, metavar="X", help="simulated labs: simulated seconds per wall second")
    p.set_defaults(func=cmd_serve)
    for action, help in ACTIONS.items():
        p = actions.add_parser(action, help=help, description=help)
        _address_arguments(p)
        if action == "stop":
            p.add_argument("--now", action="store_true", help="stop the running plan too (pause, then re_stop)")
        p.set_defaults(func=cmd_action)
    what = ("watch a rig's journal: alert (the lab file's alerts) when an open run has had no new data, "
            "or ended runs are not yet on the data server")
    p = sub.add_parser("watchdog", help=what, description=what, formatter_class=formatter,
                       epilog="example:\n  labctl watchdog configs/lab-sim.yaml\n\n" + epilog)
    p.add_argument("lab_file", type=Path, metavar="LAB.yaml", help="the rig's lab file (with its alerts section)")
    p.add_argument("--data-dir", type=Path, metavar="DIR", help="the rig's data directory (default: storage.data_dir)")
    p.set_defaults(func=cmd_watchdog)
    what = "check an experiment file as labctl check does and add its steps to a queue, as one batch"
    p = sub.add_parser("submit", help=what, description=what, formatter_class=formatter,
                       epilog="example:\n  labctl submit configs/plating-overnight.yaml --queue tcp://127.0.0.1:60615\n\n"
                              + epilog)
    p.add_argument("experiment", type=Path, metavar="EXPERIMENT.yaml", help="the experiment file to queue")
    _address_arguments(p)
    p.set_defaults(func=cmd_submit, data_dir=None)


def _address_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--queue", metavar="ADDRESS", help="the RE Manager's 0MQ address (default: the lab file's queue.address)")
    p.add_argument("--lab", type=Path, metavar="LAB.yaml",
                   help="lab file (default: the one the experiment names, else configs/lab-sim.yaml)")


def _address(args, lab_config) -> str:
    from labctl.queue.manager import section

    return args.queue or section(lab_config).address


def cmd_serve(args) -> int:
    """``labctl queue serve``: start the RE Manager for a lab."""
    from labctl.config import load_lab
    from labctl.queue.manager import manager_command, mark_served, prepare, require_data_server

    lab = load_lab(args.lab_file)
    data_dir = (args.data_dir or lab.storage.data_path).resolve()
    require_data_server(lab, data_dir)
    directory = prepare(lab, data_dir)
    mark_served(lab, args.lab_file)
    argv, env = manager_command(lab, args.lab_file, data_dir, directory, args.pace)
    print(f"queue of {lab.name} at {_address(argparse.Namespace(queue=None), lab)}; files in {directory}", flush=True)
    os.execve(argv[0], argv, env)  # the RE Manager from here on: it handles Ctrl-C and SIGTERM


def cmd_watchdog(args) -> int:
    """``labctl watchdog``: alert when a rig's open run stops gaining data."""
    from labctl.alerts import Alerter, Watchdog
    from labctl.config import load_lab
    from labctl.core.errors import UsageError

    lab = load_lab(args.lab_file)
    if lab.alerts is None:
        raise UsageError(f"{args.lab_file}: no alerts section: the watchdog has nowhere to send")
    alerter = Alerter(lab.alerts, lab.name)
    print(f"watching {(args.data_dir or lab.storage.data_path)} of {lab.name}: alert after "
          f"{lab.alerts.no_data_after / 60:g} min without new data, and when ended runs are not on the data "
          f"server after {lab.alerts.server_behind_after / 60:g} min; Ctrl-C stops", flush=True)
    try:
        Watchdog(args.data_dir or lab.storage.data_path, alerter, lab.alerts.no_data_after,
                 behind_after=lab.alerts.server_behind_after).run()
    except KeyboardInterrupt:
        pass
    finally:
        alerter.close()
    return 0


def cmd_submit(args) -> int:
    """``labctl submit``: check an experiment file, then queue its steps as one batch."""
    from labctl.cli import load
    from labctl.queue.manager import submit

    experiment, lab, _ = load(args)  # exactly as labctl check: file, line and field of every problem
    sequence_id, items = submit(experiment, lab, args.experiment, _address(args, lab))
    print(f"{args.experiment}: {len(items)} items queued as one batch, sequence {sequence_id}")
    for item in items:
        print(f"  {item['item_uid'][:8]}  {item['name']:<16} step {item['meta']['step_index'] + 1}")
    return 0


def cmd_action(args) -> int:
    """``labctl queue status|start|stop|...``: one call to the RE Manager."""
    from labctl.cli import DEFAULT_LAB
    from labctl.config import load_lab
    from labctl.queue.manager import connect, disconnect

    lab = load_lab(args.lab or DEFAULT_LAB)
    api = connect(_address(args, lab))
    try:
        return ACTION_CALLS[args.action](api, args, lab) or 0
    finally:
        disconnect(api)


def _status(api, args, lab) -> None:
    from labctl.queue.manager import call, require_redis

    s = call(api, "status", reload=True)
    print(f"manager {s['manager_state']}, environment {'open' if s['worker_environment_exists'] else 'closed'}, "
          f"RunEngine {s['re_state']}, {s['items_in_queue']} queued, {s['items_in_history']} in history, "
          f"running {s['running_item_uid'] or 'nothing'}")
    require_redis(lab)  # with --lab: whether those counts are still the queue's


def _start(api, args, lab) -> None:
    from labctl.queue.manager import call, queue_mode, require_redis

    require_redis(lab)
    if not call(api, "status", reload=True)["worker_environment_exists"]:
        call(api, "environment_open")
        call(api, "wait_for_idle", timeout=120)
        if not call(api, "status", reload=True)["worker_environment_exists"]:
            from labctl.queue.manager import QueueError

            raise QueueError("queue: the worker environment failed to open (see the RE Manager's output)")
    queue_mode(api)
    call(api, "queue_start")
    print("queue started")


def _paused_then(method: str):
    def act(api, args, lab) -> None:
        from labctl.queue.manager import call

        if call(api, "status", reload=True)["manager_state"] == "executing_queue":
            call(api, "re_pause", "immediate")
        call(api, "wait_for_idle_or_paused", timeout=60)
        call(api, method)
        print(f"{method}: done")

    return act


def _stop(api, args, lab) -> None:
    from labctl.queue.manager import call

    if args.now:  # the cell first: re_stop also stops the queue
        _paused_then("re_stop")(api, args, lab)
    else:
        call(api, "queue_stop")
        print("the queue stops after the running item")


def _simple(method: str, *options):
    def act(api, args, lab) -> None:
        from labctl.queue.manager import call

        call(api, method, *options)
        print(f"{method}: done")

    return act


def _history(api, args, lab) -> None:
    from labctl.queue.manager import call

    for item in call(api, "history_get")["items"]:
        meta, result = item.get("meta") or {}, item.get("result") or {}
        print(f"  {item['item_uid'][:8]}  {item['name']:<16} {meta.get('experiment', '-'):<24} "
              f"step {meta.get('step_index', -1) + 1:<3} {result.get('exit_status', '?'):<10} {result.get('msg', '')}")


ACTION_CALLS = {"status": _status, "start": _start, "stop": _stop, "pause": _simple("re_pause", "immediate"),
                "resume": _simple("re_resume"), "abort": _paused_then("re_abort"), "halt": _paused_then("re_halt"),
                "history": _history}
