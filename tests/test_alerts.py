"""Alerts reach a loopback HTTP endpoint (apprise json://), never block, retry; the watchdog notices silence."""

from __future__ import annotations

import json
import os
import queue
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

pytest.importorskip("apprise")

from labctl.alerts import AlertCallback, Alerter, Watchdog  # noqa: E402
from labctl.config.rigs import AlertsSection  # noqa: E402


class Endpoint:
    """A loopback HTTP server recording each JSON notification; the first ``failures`` answer 500."""

    def __init__(self, failures: int = 0):
        self.received: queue.Queue = queue.Queue()
        self.failures = failures
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                failing = endpoint.failures > 0
                endpoint.failures -= failing
                self.send_response(500 if failing else 200)
                self.end_headers()
                if not failing:
                    endpoint.received.put(json.loads(body))

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"json://127.0.0.1:{self.server.server_address[1]}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def take(self) -> dict:
        return self.received.get(timeout=60)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def endpoint():
    endpoint = Endpoint()
    yield endpoint
    endpoint.close()


def alerter(urls: dict, routes: dict | None = None, retries: int = 3) -> Alerter:
    return Alerter(AlertsSection(urls=urls, routes=routes or {}, retries=retries), "rig-a", retry_wait=0.01)


def run_documents(ended_by: str, decisions: list[int]):
    yield "start", {"uid": "r1", "plan_name": "plate", "cell": {"id": "C-7"}}
    yield "descriptor", {"uid": "d1", "run_start": "r1", "name": "guards"}
    for n, decision in enumerate(decisions):
        yield "event", {"descriptor": "d1", "data": {"guards_condition": 0, "guards_value": 1.0,
                                                     "guards_decision": decision}, "seq_num": n + 1}
    yield "stop", {"run_start": "r1", "exit_status": "success", "reason": "stopped", "result": {"ended_by": ended_by}}


@pytest.mark.parametrize("decisions", [[], [0], [0, 1], [2]])
@pytest.mark.parametrize("ended_by", ["short", "max_duration", "guard"])
def test_run_documents_become_the_routed_alerts(endpoint, ended_by, decisions):
    sender = alerter({"night": endpoint.url})
    callback = AlertCallback(sender)
    for name, doc in run_documents(ended_by, decisions):
        callback(name, doc)
    expected = [["guard_pause", "guard_resume", "guard_end"][d] for d in decisions]
    expected += ["short"] * (ended_by == "short") + ["experiment_end"]
    titles = [endpoint.take()["title"] for _ in expected]
    sender.close()
    assert [title.split()[1].rstrip(":") for title in titles] == expected
    assert all(title.startswith("[rig-a] ") for title in titles) and endpoint.received.empty()


def test_routes_send_an_event_only_to_its_urls(endpoint):
    other = Endpoint()
    try:
        sender = alerter({"chat": endpoint.url, "night": other.url}, routes={"short": ["night"]})
        sender.send("short", "cell shorted", "plate on C-7")
        sender.send("experiment_end", "run ended", "plate on C-7")  # not routed: every URL
        assert other.take()["title"] == "[rig-a] short: cell shorted"
        assert endpoint.take()["title"] == "[rig-a] experiment_end: run ended"
        assert other.take()["title"] == "[rig-a] experiment_end: run ended"
        sender.close()
        assert endpoint.received.empty() and sender.failed == []
    finally:
        other.close()


def test_a_failed_send_is_retried():
    endpoint = Endpoint(failures=2)
    try:
        sender = alerter({"night": endpoint.url}, retries=3)
        sender.send("short", "cell shorted", "x")
        assert endpoint.take()["title"] == "[rig-a] short: cell shorted"
        sender.close()
        assert sender.failed == []
    finally:
        endpoint.close()


def test_sending_never_blocks_and_gives_up_logged(caplog):
    endpoint = Endpoint()
    url = endpoint.url
    endpoint.close()  # nobody listens there now
    sender = alerter({"night": url}, retries=1)
    for _ in range(50):
        sender.send("short", "cell shorted", "x")  # returns at once: the thread does the sending
    sender.close(timeout=60)
    assert ("short", url) in sender.failed
    assert "gave up sending short" in caplog.text


@pytest.mark.parametrize("silent_for", [0.0, 599.0, 601.0, 7200.0])
def test_watchdog_alerts_once_on_silence_of_an_open_run(tmp_path, endpoint, silent_for):
    journal = tmp_path / "journal"
    journal.mkdir()
    (journal / "r1.jsonl").write_text("{}\n")
    (journal / "r1.pending").write_text("open\n")
    last = (journal / "r1.jsonl").stat().st_mtime
    sender = alerter({"night": endpoint.url})
    watchdog = Watchdog(tmp_path, sender, after=600.0)
    assert watchdog.check(now=last + silent_for) == (silent_for > 600)
    assert watchdog.check(now=last + silent_for + 60) == (silent_for + 60 > 600)  # alerted once, not again
    if silent_for + 60 > 600:
        assert "no new data from rig rig-a" in endpoint.take()["message"]
    sender.close()
    assert endpoint.received.empty()
    os.remove(journal / "r1.pending")  # the run delivered: silence is no longer a problem
    assert not watchdog.check(now=last + 10**6)
