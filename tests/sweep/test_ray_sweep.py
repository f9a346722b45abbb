"""``diamond-kedro sweep`` end to end on an embedded Ray cluster (ci profile, real ROMs), in a network
namespace with only loopback (nothing Ray starts is reachable from outside).

The runs are shortened with ``--params``: episodes capped at 400 frames and no evaluation before the
final one, so that a Pong evaluation does not dominate the test; everything else is the ci profile
(3 epochs: initial collection + 50 steps, 50 steps, one final epoch; 300 env steps).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import mlflow
import torch

from diamond_kedro.replay.store import ReplayStore
from diamond_kedro.sweep.cli import main as sweep_main

from ..isolation import loopback_only
from ..pipelines.conftest import BIN, copy_project, project_env
from diamond_kedro.utils.state_file import load_state_file

SHORT = "env.max_num_frames_per_episode=400,evaluate.every=100"


def _sweep_cmd(project: Path, *args: str) -> list[str]:
    return loopback_only([str(BIN / "python"), "-m", "diamond_kedro", "sweep", "--env", "ci", "--num-cpus", "2",
                          "--project-dir", str(project), *args])


def _env(project: Path) -> dict[str, str]:
    env = project_env()
    env.update(PYTHONPATH=str(project / "src"), OMP_NUM_THREADS="1", RAY_USAGE_STATS_ENABLED="0")
    return env


def _client(project: Path) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")


def _history(client: mlflow.MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def _check_run(project: Path, key: str) -> None:
    """The run finished with exactly the ci budget of env steps, each once."""
    run = project / "data" / "runs" / key
    state = load_state_file(run / "checkpoints" / "state.pt")
    store = ReplayStore(run / "replay" / "train")
    assert state["counters"]["epoch"] == 3 and (run / ".run_is_over").exists()
    assert store.num_steps == 300 == state["counters"]["env_steps"] == int(store.lengths.sum())


def _kill_mid_epoch(proc: subprocess.Popen, project: Path, key: str, log: Path) -> None:
    """SIGKILL the Ray worker of run ``key`` once epoch 1 is committed and epoch 2's collection is on disk."""
    status_path = project / "data" / "sweeps" / "ci" / "cells" / f"{key}.json"
    manifest = project / "data" / "runs" / key / "replay" / "train" / "manifest.json"
    deadline = time.time() + 900  # a bound for a hung worker, not a timing check (a loaded machine is slow)
    while time.time() < deadline:
        assert proc.poll() is None, f"the sweep ended before its worker could be killed:\n{log.read_text()[-4000:]}"
        status = json.loads(status_path.read_text()) if status_path.exists() else None
        if status and status["epoch"] == 1 and json.loads(manifest.read_text())["num_steps"] > status["env_steps"]:
            break
        time.sleep(0.1)
    else:  # a hung worker writes its threads' stacks into the cell logs (SIGUSR1, sweep/task.py)
        for cell in (project / "data" / "sweeps" / "ci" / "cells").glob("*.json"):
            os.kill(json.loads(cell.read_text())["pid"], signal.SIGUSR1)
        time.sleep(2)
        logs = "\n".join(p.read_text()[-3000:] for p in (project / "data" / "sweeps" / "ci" / "logs").glob("*.log"))
        raise AssertionError(f"epoch 2 of {key} never started; cell logs:\n{logs}")
    os.kill(status["pid"], signal.SIGKILL)
    state = load_state_file(project / "data" / "runs" / key / "checkpoints" / "state.pt")
    assert state["counters"]["epoch"] == 1  # killed mid-epoch: epoch 2 was not committed


def test_sweep_of_two_games_survives_a_killed_worker_and_ends_with_runs_and_report_in_mlflow(
    tmp_path: Path, capsys
) -> None:
    project = copy_project(tmp_path)
    # a longer denoiser phase (60 steps, a few seconds) keeps each epoch open long enough to be killed in
    cmd = _sweep_cmd(project, "--games", "Breakout,Pong", "--seeds", "0", "--params",
                     SHORT + ",denoiser.training.steps_per_epoch=60")
    # output to a file, not a pipe: Ray's processes inherit it, and a full pipe nobody reads would block them
    log = tmp_path / "sweep.out"
    with log.open("w") as out_file:
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=_env(project), stdout=out_file, stderr=subprocess.STDOUT,
                                text=True, start_new_session=True)
        try:
            _kill_mid_epoch(proc, project, "Breakout_seed0_ci", log)
            proc.wait(timeout=1200)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    out = log.read_text()
    assert proc.returncode == 0, out[-6000:]
    assert "2 done" in out

    cells = project / "data" / "sweeps" / "ci" / "cells"
    breakout, pong = (json.loads((cells / f"{k}.json").read_text()) for k in ("Breakout_seed0_ci", "Pong_seed0_ci"))
    assert (breakout["state"], breakout["attempt"]) == ("done", 2)  # Ray retried the killed task once
    assert (pong["state"], pong["attempt"]) == ("done", 1)

    client = _client(project)
    runs = client.search_runs([client.get_experiment_by_name("diamond-atari").experiment_id])
    by_name = {r.info.run_name: r for r in runs}
    assert sorted(r.info.run_name for r in runs) == ["Breakout_seed0_ci", "Pong_seed0_ci", "report_ci"]  # no duplicate
    for key in ("Breakout_seed0_ci", "Pong_seed0_ci"):
        _check_run(project, key)  # exactly 300 env steps each, the killed epoch's included once
        run = by_name[key]
        assert run.data.params["env.game"] == key.split("_")[0]
        history = _history(client, run.info.run_id, "env_steps")
        assert [s for s, _ in history] == [1, 2, 3] and history[1][1] - history[0][1] == 50 and history[2][1] == 300
        assert "final_return_mean" in run.data.metrics
    assert {a.path for a in client.list_artifacts(by_name["report_ci"].info.run_id)}, "the report run has no files"
    assert (project / "data" / "08_reporting" / "ci").is_dir()

    # --status reads the sweep's folder; no Ray needed
    capsys.readouterr()
    assert sweep_main(["--status", "--env", "ci", "--project-dir", str(project)]) == 0
    lines = capsys.readouterr().out.splitlines()
    table = lines[next(i for i, line in enumerate(lines) if line.startswith("game ")):]
    assert table[1].split()[:4] == ["Breakout", "0", "3/3", "300"] and table[1].split()[-1] == "done"
    assert table[2].split()[:4] == ["Pong", "0", "3/3", "300"] and table[-1] == "2 done"


def test_bad_input_fails_with_one_line_and_writes_nothing(tmp_path: Path, capsys) -> None:
    project = copy_project(tmp_path)
    cases = [
        (["--games", "Breakout,Tetris", "--seeds", "0"], "'Tetris'"),
        (["--games", "Breakout", "--seeds", "2-1"], "--seeds: empty range"),
        (["--games", "Breakout", "--seeds", "0", "--params", "denoiser.training.lr=-1"], "denoiser.training.lr"),
        (["--games", "Breakout", "--seeds", "0", "--env", "nosuchprofile"], "no profile 'nosuchprofile'"),
        (["--status", "--name", "never_ran"], "no sweep at"),
    ]
    for args, message in cases:
        argv = ["--project-dir", str(project), *(["--env", "ci"] if "--env" not in args else []), *args]
        assert sweep_main(argv) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("diamond-kedro sweep: error: ") and message in err, (args, err)
    assert not (project / "data").exists() and not (project / "mlflow.db").exists()
