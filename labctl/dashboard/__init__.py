"""``labctl dashboard``: the lab and its runs in a browser, updating live while runs write.

A lab overview (rig, cell, step, state, elapsed time, plated capacity, last R_int, queue, last
alert), the lab's newest alerts (those :mod:`labctl.alerts` sends, from the stored runs) and per run the voltage (min/max downsampled, so soft shorts stay visible), the spectra with
their fits, the DRT, R_bulk/R_int against time with the short marked, and the guard decisions.
Read-only without the API key; with it, each rig's queue (bluesky-queueserver) can be paused,
resumed and stopped. Charts are drawn by plotly.js from the plotly package: nothing is fetched
from the internet.
"""

import socket

from labctl.dashboard.app import Dashboard, connect_queues, create_app

__all__ = ["Dashboard", "bind", "connect_queues", "create_app", "serve"]


def bind(host: str, port: int) -> socket.socket:
    """A listening socket: once this returns, browsers can connect (before the app has started)."""
    sock = socket.create_server((host, port), reuse_port=False)
    sock.set_inheritable(True)
    return sock


def serve(dashboard: Dashboard, sock: socket.socket) -> None:
    """Serve ``dashboard`` on ``sock`` until Ctrl-C or SIGTERM (uvicorn)."""
    import uvicorn

    uvicorn.Server(uvicorn.Config(create_app(dashboard), log_level="warning")).run(sockets=[sock])
