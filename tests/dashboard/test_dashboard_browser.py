"""The dashboard in a real browser (Debian's chromium, driven by playwright) while a run plates live.

``labctl serve`` shares the data directory, ``labctl run --pace`` plates on the simulated lab
through it, and ``labctl dashboard`` reads it; the browser sees the rig listed, the voltage plot
gain points without a reload, and the short arrive as an alert. Screenshots go to
``test-artifacts/dashboard/`` (phone-sized and desktop).
"""

import secrets
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

playwright = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboard"
CONFIGS = Path(__file__).resolve().parents[2] / "configs"
PHONE = {"width": 390, "height": 844}

# Plating that shorts within a few simulated hours (a minute or so at --pace 60, so the page sees it
# running on a loaded machine); pages every 2 min so the plot grows often.
LIVE_EXPERIMENT = f"""\
name: dashboard-live
lab: {CONFIGS / "lab-sim.yaml"}
seed: 7
cell:
  id: LLZTO-DASH-1
  kind: symmetric
  thickness: 1.2 mm
  electrode_diameter: 2 mm
steps:
  - plan: set_pressure
    pressure: 5 MPa
  - plan: plate
    current_density: 0.5 mA/cm^2
    geis_interval: 20 min
    geis_f_min: 1 Hz
    page_interval: 2 min
    max_duration: 12 h
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def started(command: list[str], log: Path, expect: str | None = None) -> subprocess.Popen:
    """Start a labctl command, its output into ``log``; wait (reading, not sleeping) for its ready line.

    Output goes to a file, not a pipe nobody reads: a full pipe would stall the server writing it.
    """
    with log.open("w") as out:
        process = subprocess.Popen([sys.executable, "-m", "labctl.cli", *command], stdout=subprocess.PIPE,
                                   stderr=out, text=True)
    if expect is not None:
        line = process.stdout.readline()
        if expect not in line:
            process.kill()
            pytest.fail(f"{command[0]} did not start: {line}{log.read_text()[-2000:]}")
    process.drain = threading.Thread(target=append, args=(process.stdout, log), daemon=True)
    process.drain.start()
    return process


def append(stream, log: Path) -> None:
    """Copy the rest of a process's output into its log (a pipe nobody read would stall it)."""
    with stream, log.open("a") as out:
        shutil.copyfileobj(stream, out)


def stopped(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    process.drain.join(timeout=30)


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make test installs it)")
@pytest.mark.timeout(900)  # three processes with tiled, and a browser, on a loaded 2-core machine
def test_the_dashboard_follows_a_live_run_to_its_short(tmp_path):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    data_dir, key = tmp_path / "data", secrets.token_hex(32)
    data_dir.mkdir()
    experiment = tmp_path / "live.yaml"
    experiment.write_text(LIVE_EXPERIMENT)
    serve = started(["serve", str(data_dir), "--port", str(free_port()), "--api-key", key], tmp_path / "serve.log",
                    "serving")
    port = free_port()
    dashboard = started(["dashboard", "--data-dir", str(data_dir), "--port", str(port), "--poll", "0.5"],
                        tmp_path / "dashboard.log", "dashboard of")
    run = None
    try:
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport=PHONE)
            page.goto(f"http://127.0.0.1:{port}/")
            run = started(["run", str(experiment), "--data-dir", str(data_dir), "--pace", "60"], tmp_path / "run.log")
            rig = page.locator("tr[data-rig='lab-sim']")
            playwright.expect(rig).to_contain_text("plate", timeout=300_000)  # pushed: no reload
            playwright.expect(rig).to_contain_text("running")
            page.screenshot(path=ARTIFACTS / "overview-phone.png", full_page=True)

            page.click("tr[data-rig='lab-sim'] a")
            page.wait_for_url("**/run/*")
            points = "document.getElementById('voltage')?.data?.[0]?.x?.length ?? 0"
            page.wait_for_function(f"{points} > 0", timeout=120_000)
            first = page.evaluate(points)
            page.wait_for_function(f"{points} > {first}", timeout=120_000)  # the plot grows as the run goes
            page.screenshot(path=ARTIFACTS / "run-live-phone.png", full_page=True)

            page.goto(f"http://127.0.0.1:{port}/")
            playwright.expect(rig.locator(".alert-short")).to_contain_text("short circuit", timeout=300_000)
            playwright.expect(page.locator("#alerts tr[data-event='short']")).to_contain_text("shorted")  # the list too
            page.screenshot(path=ARTIFACTS / "overview-short-phone.png", full_page=True)
            page.set_viewport_size({"width": 1280, "height": 900})
            page.click("tr[data-rig='lab-sim'] a")
            page.wait_for_url("**/run/*")
            page.wait_for_function("document.getElementById('nyquist')?.data?.length > 0", timeout=120_000)
            assert "short circuit" in page.text_content("#summary")
            page.screenshot(path=ARTIFACTS / "run-shorted-desktop.png", full_page=True)
            browser.close()
        assert run.wait(timeout=300) == 0, (tmp_path / "run.log").read_text()[-2000:]
        assert "short circuit" in (tmp_path / "run.log").read_text()
    finally:
        if run is not None:
            stopped(run)
        stopped(dashboard)
        stopped(serve)
