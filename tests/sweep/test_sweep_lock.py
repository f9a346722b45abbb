"""One driver per sweep; ``--status`` tells a live cell from one left "running" by a dead driver; a sweep
does not take over a run folder it did not start unless ``--adopt``. No Ray is started by these tests."""

from __future__ import annotations

import socket
from pathlib import Path

from diamond_kedro.sweep.cli import main as sweep_main
from diamond_kedro.sweep.spec import CellStatus, Sweep, write_status

from ..lock_helpers import HOLD, spawn, wait_for
from ..pipelines.conftest import copy_project

KEY = "Breakout_seed0_ci"


def _args(project: Path, *more: str) -> list[str]:
    return ["--project-dir", str(project), "--env", "ci", *more]


def _table_state(out: str) -> str:
    row = next(line for line in out.splitlines() if line.startswith("Breakout"))
    return row.split()[5]


def test_second_driver_fails_with_the_holder_and_status_tells_live_from_stale(tmp_path: Path, capsys) -> None:
    project = copy_project(tmp_path)
    folder = project / "data" / "sweeps" / "ci"
    sweep = Sweep(name="ci", folder=folder, project=str(project), env="ci", games=["Breakout"], seeds=[0],
                  run_root=str(project / "data" / "runs"))
    folder.mkdir(parents=True)
    sweep.save()
    driver = spawn(HOLD, str(folder), "sweep", str(tmp_path / "ready"))  # a live driver of this sweep
    try:
        wait_for(tmp_path / "ready", driver)
        cell = sweep.status_path("Breakout", 0)
        write_status(cell, CellStatus("Breakout", 0, KEY, state="running", attempt=1, host=socket.gethostname(),
                                      pid=driver.pid))
        before = cell.read_bytes()

        assert sweep_main(_args(project, "--games", "Breakout", "--seeds", "0")) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("diamond-kedro sweep: error: sweep ")
        assert f"pid {driver.pid} on {socket.gethostname()}" in err
        assert cell.read_bytes() == before  # the running cell was not reset to pending

        assert sweep_main(_args(project, "--status")) == 0
        assert _table_state(capsys.readouterr().out) == "running"
    finally:
        driver.kill()
        driver.wait()
    assert sweep_main(_args(project, "--status")) == 0
    out = capsys.readouterr().out
    assert _table_state(out) == "stale:" and "driver that is gone" in out and "1 stale" in out


def test_sweep_refuses_a_run_folder_it_did_not_start_unless_adopt(tmp_path: Path, capsys) -> None:
    project = copy_project(tmp_path)
    run = project / "data" / "runs" / KEY
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "state.pt").write_bytes(b"a run started by hand")

    assert sweep_main(_args(project, "--games", "Breakout", "--seeds", "0")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--adopt" in err and str(run) in err
    assert not (project / "data" / "sweeps" / "ci" / "sweep.json").exists()  # nothing of the sweep written
    assert (run / "checkpoints" / "state.pt").read_bytes() == b"a run started by hand"
