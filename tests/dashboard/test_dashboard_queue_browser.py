"""The dashboard's stop button, clicked in Debian's chromium, against a rig's real queue.

A private redis-server, a data server and ``labctl queue serve`` on loopback (as
tests/test_queue_live.py starts them, from tests/queue_servers.py); the dashboard is served by
uvicorn on a thread of the test, with the queue's API client and a key. Without the key the page
has no buttons; with it, stop ends the running plate with the cell at open circuit.
"""

from __future__ import annotations

import secrets
import shutil
import threading
from pathlib import Path

import pytest
import yaml

playwright = pytest.importorskip("playwright.sync_api")
pytest.importorskip("bluesky_queueserver")

from labctl.cli import main  # noqa: E402
from tests.queue_servers import Queue, Redis, write_experiment, write_lab  # noqa: E402

CHROMIUM = shutil.which("chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboard"
PACE = 30  # simulated seconds per wall second: the plate of four hours is stopped long before its end
# A lithiophilic cell under stack pressure at a low current: it does not short before the button is clicked.
STEPS = [{"plan": "set_pressure", "pressure": "5 MPa"},
         {"plan": "plate", "current_density": "0.1 mA/cm^2", "max_duration": "4 h", "geis_interval": "1 h",
          "geis_f_min": "10 Hz"}]


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    from labctl.dataserver import DataServer

    directory = tmp_path_factory.mktemp("queue-browser")
    redis = Redis(directory).start()
    server = DataServer(directory / "server", api_key="secret")
    lab = write_lab(directory, "rig-a", redis.port, f"{server.uri}")
    queue = None
    try:
        queue = Queue(lab, PACE, directory / "rig-a.log").start()
        yield queue, server, directory
    finally:
        if queue is not None:
            queue.stop()
        server.close()
        redis.stop()


class Served:
    """The dashboard of the data server's catalog and the rig's queue, on uvicorn in a thread."""

    def __init__(self, catalog, queues: dict, api_key: str | None):
        import uvicorn

        from labctl.dashboard import Dashboard, bind, create_app

        self.sock = bind("127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/"
        app = create_app(Dashboard(catalog, queues, api_key, poll_interval=0.5))
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=60)
        self.sock.close()


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make test installs it)")
@pytest.mark.timeout(900)
def test_the_stop_button_in_the_browser_opens_the_circuit_of_the_running_plate(rig):
    from labctl.storage import Storage

    queue, server, directory = rig
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    experiment = write_experiment(directory, queue.lab_path, "plate-browser", STEPS)
    text = yaml.safe_load(experiment.read_text())
    text["cell"]["surface"] = "lithiophilic"
    experiment.write_text(yaml.safe_dump(text))
    assert main(["submit", str(experiment), "--queue", queue.address]) == 0
    assert main(["queue", "start", "--queue", queue.address]) == 0
    queue.wait_running_closed_circuit()

    key = secrets.token_hex(16)
    (directory / "dashboard").mkdir(exist_ok=True)
    storage = Storage.open(directory / "dashboard", server.uri, live=False)  # the data server's catalog
    readonly, control = Served(storage.catalog, {"rig-a": queue.api}, None), None
    try:
        control = Served(storage.catalog, {"rig-a": queue.api}, key)
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 390, "height": 844})
            page.goto(readonly.url)
            row = page.locator("tr[data-rig='rig-a']")
            try:
                playwright.expect(row).to_contain_text("executing_queue", timeout=120_000)
            except AssertionError:
                page.screenshot(path=ARTIFACTS / "queue-not-shown.png", full_page=True)
                raise AssertionError(f"page: {page.text_content('body')}; queue: {queue.api.status()}") from None
            assert row.locator("button").count() == 0  # read-only without a key: no buttons
            assert queue.cell_state()["circuit"] == "closed"

            page.goto(control.url)
            page.fill("#api-key", "not the key")
            page.click("tr[data-rig='rig-a'] button[data-action='stop']")
            playwright.expect(page.locator("#answer")).to_contain_text("API key is needed", timeout=60_000)
            assert queue.cell_state()["circuit"] == "closed"  # refused: the plate goes on

            page.fill("#api-key", key)
            page.click("tr[data-rig='rig-a'] button[data-action='stop']")
            playwright.expect(page.locator("#answer")).to_contain_text("circuit is open", timeout=120_000)
            queue.api.wait_for_idle(timeout=60)
            assert queue.cell_state()["circuit"] == "open"
            assert queue.api.history_get()["items"][-1]["result"]["exit_status"] == "stopped"
            assert "short" not in page.text_content("#rigs")  # stopped by the button, not by a short
            playwright.expect(row).to_contain_text("idle", timeout=60_000)
            playwright.expect(row.locator(".state-running")).to_have_count(0, timeout=120_000)  # the run's end, pushed
            page.screenshot(path=ARTIFACTS / "overview-stopped-phone.png", full_page=True)
            browser.close()
    finally:
        readonly.close()
        if control is not None:
            control.close()
        storage.close()
