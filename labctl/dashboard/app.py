"""The dashboard's web app (Starlette): pages, JSON, server push and queue control.

Read-only for everyone; with the API key (header ``X-API-Key``) a rig's queue can be paused,
resumed and stopped. The page is told to re-read by server-sent events whenever the catalog
changes (a new run, a run ending, new rows of a running run), so it updates without a reload; one
poller (:class:`Changes`) reads the catalog once per interval for all the pages connected.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import threading
from importlib.resources import files
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from labctl.dashboard import data

log = logging.getLogger(__name__)
STATIC = Path(str(files("labctl.dashboard") / "static"))
QUEUE_ACTIONS = ("pause", "resume", "stop")


def plotly_js() -> Path:
    """plotly.js as shipped inside the plotly package: nothing is fetched from the internet."""
    import plotly

    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


class Dashboard:
    """The state behind the routes: the catalog, the queues, the API key, the push interval."""

    def __init__(self, catalog, queues: dict[str, object] | None = None, api_key: str | None = None,
                 poll_interval: float = 2.0) -> None:
        self.catalog = catalog
        self.queues = queues or {}
        self.api_key = api_key
        self.changes = Changes(self.fingerprint, poll_interval)
        self._lock = threading.Lock()  # one tiled request at a time from the worker threads
        self._ended_alerts: dict[str, list[dict]] = {}  # an ended run's alerts do not change

    def read(self, function, *args):
        with self._lock:
            return function(*args)

    def overview(self) -> dict:
        """The lab overview (:func:`labctl.dashboard.data.overview`), ended runs' alerts from the cache."""
        with self._lock:
            return data.overview(self.catalog, alerts_of=self.alerts_of)

    def alerts_of(self, run) -> list[dict]:
        uid = run.metadata["start"]["uid"]
        if uid in self._ended_alerts:
            return self._ended_alerts[uid]
        found = data.run_alerts(run)
        if run.metadata.get("stop"):
            self._ended_alerts[uid] = found
        return found

    def fingerprint(self) -> str:
        """Changes whenever a page would show something new: a run or a queue's state."""
        with self._lock:
            parts = []
            for uid, run in self.catalog.sort(("start.time", -1)).items()[:50]:
                state = data.run_state(run.metadata)
                rows = data.length(run, "potentiostat", "potentiostat_time") if state == "running" else ""
                parts.append(f"{uid}:{state}:{rows}")
        queues = queue_states(self.queues)  # a queue paused, stopped or started is news too
        parts += [f"{rig}:{q.get('state')}:{q.get('queued')}:{q.get('running')}" for rig, q in sorted(queues.items())]
        return "|".join(parts)

    def authorised(self, request: Request) -> bool:
        given = request.headers.get("x-api-key", "")
        return bool(self.api_key) and hmac.compare_digest(given, self.api_key)


class Changes:
    """One poller of the catalog's fingerprint for every connected page.

    It runs while a page is connected (:meth:`viewer`), reading ``fingerprint`` once per
    ``interval`` whatever the number of pages; each read is a tick, and a changed fingerprint a new
    version. Pages wait for the next tick (:meth:`wait`) and are told when the version moved.
    """

    def __init__(self, fingerprint, interval: float):
        self.fingerprint, self.interval = fingerprint, interval
        self.tick = self.version = self.viewers = 0
        self._ticked: asyncio.Condition | None = None
        self._poller: asyncio.Task | None = None

    @contextlib.asynccontextmanager
    async def viewer(self):
        """Count a connected page while inside; the first one starts the poller."""
        self.viewers += 1
        if self._poller is None:  # nobody waits on the condition: made anew on this loop
            self._ticked = asyncio.Condition()
            self._poller = asyncio.get_running_loop().create_task(self._poll())
        try:
            yield self
        finally:
            self.viewers -= 1

    async def wait(self, after: int) -> tuple[int, int]:
        """Wait for a tick later than ``after``; return (tick, version)."""
        async with self._ticked:
            await self._ticked.wait_for(lambda: self.tick > after)
            return self.tick, self.version

    async def _poll(self) -> None:
        last = None
        try:
            while self.viewers:
                try:
                    now = await asyncio.to_thread(self.fingerprint)
                except Exception as error:  # the data server away for a moment: say so, look again
                    log.warning("dashboard: could not read the catalog: %s", error)
                    now = last
                async with self._ticked:
                    if now != last:
                        last, self.version = now, self.version + 1
                    self.tick += 1
                    self._ticked.notify_all()
                await asyncio.sleep(self.interval)
        finally:
            self._poller = None


def create_app(dashboard: Dashboard) -> Starlette:
    """The Starlette app serving ``dashboard``."""

    async def page(request: Request) -> Response:
        return FileResponse(STATIC / ("run.html" if "uid" in request.path_params else "index.html"))

    async def overview(request: Request) -> Response:
        found = await asyncio.to_thread(dashboard.overview)
        found["queues"] = await asyncio.to_thread(queue_states, dashboard.queues)
        listed = {row["rig"] for row in found["rigs"]}
        found["rigs"] += [data.rig_without_runs(rig) for rig in sorted(dashboard.queues) if rig not in listed]
        found["controls"] = bool(dashboard.api_key)
        return JSONResponse(found)

    async def run(request: Request) -> Response:
        uid = request.path_params["uid"]
        try:
            node = await asyncio.to_thread(dashboard.read, dashboard.catalog.__getitem__, uid)
        except KeyError:
            return JSONResponse({"error": f"run {uid} is not in the catalog"}, status_code=404)
        return JSONResponse(await asyncio.to_thread(dashboard.read, data.run_detail, node))

    async def events(request: Request) -> Response:
        async def stream():
            async with dashboard.changes.viewer():
                tick, shown = 0, 0
                while not await request.is_disconnected():  # checked each tick: a closed page leaves
                    tick, version = await dashboard.changes.wait(tick)
                    if version != shown:
                        shown = version
                        yield f"event: changed\ndata: {json.dumps(version)}\n\n"
        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})

    async def control(request: Request) -> Response:
        rig, action = request.path_params["rig"], request.path_params["action"]
        if not dashboard.authorised(request):
            return JSONResponse({"error": "an API key is needed to control a queue"}, status_code=401)
        if rig not in dashboard.queues or action not in QUEUE_ACTIONS:
            return JSONResponse({"error": f"no queue {rig!r} or action {action!r} (allowed: "
                                          f"{', '.join(QUEUE_ACTIONS)})"}, status_code=404)
        try:
            done = await asyncio.to_thread(QUEUE_CALLS[action], dashboard.queues[rig])
        except Exception as error:  # the queue's own message, not a traceback
            return JSONResponse({"error": f"{rig}: {action} failed: {error}"}, status_code=502)
        return JSONResponse({"rig": rig, "action": action, "done": done})

    async def plotly(request: Request) -> Response:
        return FileResponse(plotly_js(), media_type="text/javascript")

    return Starlette(routes=[
        Route("/", page), Route("/run/{uid}", page),
        Route("/api/overview", overview), Route("/api/runs/{uid}", run), Route("/api/events", events),
        Route("/api/queues/{rig}/{action}", control, methods=["POST"]),
        Route("/static/plotly.min.js", plotly),
        Mount("/static", StaticFiles(directory=STATIC)),
    ])


# ---- queues (bluesky-queueserver) -------------------------------------------------------------
def queue_states(queues: dict) -> dict:
    """Each queue's manager state, queued item count and running plan; the error when unreachable."""
    states = {}
    for rig, manager in queues.items():
        try:
            status = manager.status()
            states[rig] = {"state": status.get("manager_state"), "queued": status.get("items_in_queue"),
                           "running": status.get("running_item_uid")}
        except Exception as error:
            states[rig] = {"state": "unreachable", "error": str(error)}
    return states


def pause(manager) -> str:
    """Pause the running plan at once: the channel opens the circuit."""
    manager.re_pause(option="immediate")
    return "paused: the cell is at open circuit until resumed"


def resume(manager) -> str:
    """Resume a paused plan, or start an idle queue."""
    if manager.status().get("manager_state") == "paused":
        manager.re_resume()
        return "resumed"
    manager.queue_start()
    return "queue started"


def stop(manager) -> str:
    """Stop the running plan, the cell first (as ``labctl queue stop --now``): re_stop also stops the queue."""
    if manager.status().get("manager_state") == "executing_queue":
        manager.re_pause(option="immediate")
    manager.wait_for_idle_or_paused(timeout=60)
    if manager.status().get("manager_state") == "paused":
        manager.re_stop()
    return "stopped: the running plan ended, the circuit is open"


QUEUE_CALLS = {"pause": pause, "resume": resume, "stop": stop}


def connect_queues(addresses: dict[str, str]) -> dict:
    """A queueserver API client per rig, from ``rig=tcp://host:60615`` control addresses."""
    from bluesky_queueserver_api.zmq import REManagerAPI

    return {rig: REManagerAPI(zmq_control_addr=address) for rig, address in addresses.items()}
