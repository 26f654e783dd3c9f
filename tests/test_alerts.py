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


# ---- an instrument fault that ends a run ------------------------------------------------------------
@pytest.mark.parametrize("instrument", ["potentiostat", "chamber", "rig"])
def test_an_instrument_fault_ending_a_run_is_an_alert_naming_it_and_its_address(tmp_path, endpoint, instrument):
    from labctl.alerts import alert_faults
    from plans import plate
    from tests.test_faults import LOST, PLATING, Bench

    bench = Bench(tmp_path)  # the wired simulated lab: the fault is at the instrument's own protocol
    sender = alerter({"night": endpoint.url})
    try:
        lab = bench.lab
        bench.fault(instrument, "no_reply")
        meta = {"experiment_file": "night.yaml", "step_label": "plate", "cell": {"id": "C-7"}}
        with pytest.raises(Exception) as raised:
            bench.plate(alert_faults(sender, lambda: plate(lab.potentiostat, lab.chamber, lab.rig, **PLATING),
                                     lambda: meta))
        message = endpoint.take()
        sender.close()
        address = bench.address(instrument)
    finally:
        bench.lab.close()
    assert bench.stop_document()["exit_status"] == "fail"  # the run ended as it does without alerts
    title = message["title"]  # the instrument as its driver names it ("chamber (Modbus unit 1)"), and where
    assert title.startswith(f"[rig-a] instrument_fault: {instrument}") and title.endswith(f" at {address}")
    assert LOST[instrument] in message["message"] and str(raised.value) in message["message"]
    assert "night.yaml" in message["message"] and "cell C-7" in message["message"]
    assert endpoint.received.empty()


@pytest.mark.parametrize("error", [ValueError("voltage window"), RuntimeError("a plan's own bug"), None])
def test_a_run_ending_without_an_instrument_fault_is_no_fault_alert(endpoint, error):
    import bluesky.plan_stubs as bps
    from bluesky import RunEngine

    from labctl.alerts import alert_faults

    def plan():
        yield from bps.open_run()
        if error is not None:
            raise error
        yield from bps.close_run()

    sender = alerter({"night": endpoint.url})
    RE = RunEngine({}, context_managers=[])
    if error is None:
        RE(alert_faults(sender, plan))
    else:
        with pytest.raises(type(error)):
            RE(alert_faults(sender, plan))
    sender.close()
    assert endpoint.received.empty() and sender.failed == []


def test_a_fault_wrapped_by_a_failed_cleanup_is_found():
    from devices.errors import InstrumentLost
    from labctl.alerts import instrument_fault
    from plans.stubs import NotAtOpenCircuit

    lost = InstrumentLost("chamber", "tcp://10.0.0.5:502", "no valid reply to the read")
    try:
        try:
            raise lost
        except InstrumentLost as first:
            raise NotAtOpenCircuit(first, RuntimeError("channel busy")) from RuntimeError("channel busy")
    except NotAtOpenCircuit as wrapped:
        assert instrument_fault(wrapped) is lost
    assert instrument_fault(RuntimeError("no instrument")) is None


# ---- the data server falling behind -----------------------------------------------------------------
def journal_run(journal, uid: str, ended: bool, pending: bool, at: float) -> None:
    lines = [{"name": "start", "doc": {"uid": uid}}] + [{"name": "stop", "doc": {"run_start": uid}}] * ended
    path = journal / f"{uid}.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    os.utime(path, (at, at))
    if pending:
        (journal / f"{uid}.pending").write_text(json.dumps({"uid": uid, "reason": "server unreachable"}))


@pytest.mark.parametrize("waited", [0.0, 299.0, 301.0, 3 * 3600.0])
def test_ended_runs_waiting_for_the_server_alert_once(tmp_path, endpoint, waited):
    journal = tmp_path / "journal"
    journal.mkdir()
    now = 2e9
    journal_run(journal, "ended-pending", ended=True, pending=True, at=now - waited)
    journal_run(journal, "ended-delivered", ended=True, pending=False, at=now - 10**5)
    sender = alerter({"night": endpoint.url})
    watchdog = Watchdog(tmp_path, sender, after=600.0, behind_after=300.0)
    assert not watchdog.check(now=now)  # an ended run is not a silent one, however long ago it ended
    watchdog.check(now=now + 60)  # the next look: no second alert for the same backlog
    if waited + 60 > 300:
        message = endpoint.take()
        assert message["title"] == "[rig-a] server_behind: 1 runs not on the data server"
        alerted_at = now if waited > 300 else now + 60
        assert f"the oldest ended {(alerted_at - (now - waited)) / 60:.0f} min ago" in message["message"]
        assert "server unreachable" in message["message"]
    sender.close()
    assert endpoint.received.empty()
    os.remove(journal / "ended-pending.pending")  # delivered: the next backlog alerts again
    watchdog.check(now=now + 10**6)
    assert not watchdog.alerted_behind


def test_a_run_kept_from_an_unreachable_server_is_reported_behind(tmp_path, endpoint):
    """Real storage, a server nobody answers at: the run stays in the journal and the watchdog says so."""
    import bluesky.plan_stubs as bps
    from bluesky import RunEngine

    from labctl.storage import Storage
    from tests.queue_servers import free_port

    storage = Storage.open(tmp_path, f"http://127.0.0.1:{free_port()}/api/v1?api_key=x", live=False)
    RE = RunEngine({}, context_managers=[])
    RE.subscribe(storage.callback)

    def run():
        yield from bps.open_run({"plan_name": "rest"})
        yield from bps.close_run()

    (uid,) = RE(run())
    storage.close(timeout=5)
    ended = (tmp_path / "journal" / f"{uid}.jsonl").stat().st_mtime
    sender = alerter({"night": endpoint.url})
    watchdog = Watchdog(tmp_path, sender, after=600.0, behind_after=600.0)
    watchdog.check(now=ended + 599)
    watchdog.check(now=ended + 601)
    message = endpoint.take()
    sender.close()
    assert message["title"] == "[rig-a] server_behind: 1 runs not on the data server"
    assert "the oldest ended 10 min ago" in message["message"] and endpoint.received.empty()
