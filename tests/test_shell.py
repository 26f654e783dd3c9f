"""The interactive session: the README's two-line recipe gives a working RunEngine, lab and catalog."""

from pathlib import Path

from labctl.shell import open_session

LAB_FILE = Path(__file__).resolve().parents[1] / "configs" / "lab-sim.yaml"


def test_open_session_runs_plans_by_hand_into_the_catalog(tmp_path):
    ns = open_session(LAB_FILE, tmp_path / "data")
    RE, plans, storage = ns["RE"], ns["plans"], ns["storage"]
    try:
        RE(plans.set_temperature(ns["chamber"], temperature=303.15))
        RE(plans.set_pressure(ns["rig"], pressure=5e6))
        result = RE(plans.plate(ns["potentiostat"], ns["chamber"], ns["rig"], current_density=5.0,
                                electrode_area=3.14e-6, geis_interval=600, max_duration=600))
        assert storage.flush(timeout=60)
        run = ns["catalog"][result.run_start_uids[0]]
        assert run.metadata["stop"]["reason"] == "time limit reached: 0.17 h"
        assert run["potentiostat"].read()["potentiostat_Ewe"].size == 600
        assert run["impedance"].read()["potentiostat_eis_z_real"].shape[0] == 2
    finally:
        ns["lab"].close()
        storage.close()
