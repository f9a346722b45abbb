"""``kedro run --pipelines=atari`` (a whole run) is the ``atari_epoch`` graph run once per epoch, each in its own
Kedro session, until the committed epoch is the run's last (src/diamond_kedro/cli.py: ``run_epochs``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import mlflow
import pytest
from click.testing import CliRunner
from kedro.io import MemoryDataset

from diamond_kedro import cli as project_cli
from diamond_kedro.pipelines import atari, atari_epoch
from diamond_kedro.reporting import EpochReport
from diamond_kedro.training.run_common import RunIsOver

from ..isolation import loopback_only
from .conftest import BIN, kedro_run, project_env

RUN = Path("data/runs/Breakout_seed0_ci")


def _signature(pipeline) -> list[tuple]:
    return sorted((n.name, n.func.__name__, tuple(n.inputs), tuple(n.outputs)) for n in pipeline.nodes)


def test_atari_is_the_epoch_graph_without_a_looping_node() -> None:
    whole, epoch = atari.create_pipeline(), atari_epoch.create_pipeline()
    assert _signature(whole) == _signature(epoch)
    assert [n.name for n in whole.nodes][0] == "collect" and [n.name for n in whole.nodes][-1] == "commit_epoch"


def _sessions(reports: list[EpochReport | BaseException]):
    """A stand-in for Kedro's ``run`` command: each call is one session returning its (dataset) outputs."""
    calls: list[dict] = []

    def callback(**kwargs):
        calls.append(kwargs)
        item = reports[len(calls) - 1]
        if isinstance(item, BaseException):
            raise item
        return {"epoch_metrics": MemoryDataset(item, copy_mode="assign")}

    return callback, calls


def test_the_run_command_repeats_the_epoch_session_until_the_run_is_over(monkeypatch: pytest.MonkeyPatch) -> None:
    last = EpochReport(epoch=3, run_key="k", metrics={"final_return_mean": 1.5}, run_is_over=True)
    callback, calls = _sessions([EpochReport(epoch=1, run_key="k"), EpochReport(epoch=2, run_key="k"), last])
    monkeypatch.setattr(project_cli.kedro_run, "callback", callback)
    result = CliRunner().invoke(project_cli.cli, ["run", "--pipelines=atari", "--env=ci"])
    assert result.exit_code == 0, result.output
    assert len(calls) == 3 and all(c["pipelines"] == ["atari"] and c["env"] == "ci" for c in calls)
    # the last session's outputs are the command's: the final evaluation's metrics
    assert project_cli.committed_report(project_cli.run_epochs(_sessions([last])[0])).metrics == last.metrics

    # one epoch pipeline is one session, as before
    callback, calls = _sessions([EpochReport(epoch=1, run_key="k")] * 2)
    monkeypatch.setattr(project_cli.kedro_run, "callback", callback)
    assert CliRunner().invoke(project_cli.cli, ["run", "--pipelines=atari_epoch"]).exit_code == 0 and len(calls) == 1


def test_a_finished_run_is_nothing_to_do_and_an_error_mid_run_still_fails() -> None:
    over = RunIsOver("run k is over: all 3 epochs are committed")
    assert project_cli.run_epochs(_sessions([over])[0]) == {}
    callback, calls = _sessions([EpochReport(epoch=1, run_key="k"), RuntimeError("node failed")])
    with pytest.raises(RuntimeError, match="node failed"):
        project_cli.run_epochs(callback)
    assert len(calls) == 2
    # a partial run (e.g. --to-nodes: no commit_epoch among the nodes run, no report) is one session
    calls.clear()
    assert project_cli.run_epochs(lambda: calls.append(1) or {}) == {} and calls == [1]


def test_a_whole_ci_run_is_one_mlflow_run_with_one_row_per_epoch(project: Path) -> None:
    kedro_run(project, "--pipelines=atari", "--env=ci", timeout=900)
    metrics = json.loads((project / RUN / "metrics.json").read_text())
    # ci profile: 300 env steps; 200 initial + 2 collecting epochs of 50, then 1 final epoch
    assert metrics["epoch"] == 3 and metrics["env_steps"] == 300 and "final_return_mean" in metrics
    assert (project / RUN / ".run_is_over").exists()

    client = mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    (run,) = client.search_runs(client.get_experiment_by_name("diamond-atari").experiment_id)
    for key in ("denoiser/train/loss_denoising", "actor_critic/train/loss_total", "env_steps"):
        assert [m.step for m in client.get_metric_history(run.info.run_id, key)] == [1, 2, 3], key
    assert [m.step for m in client.get_metric_history(run.info.run_id, "final_return_mean")] == [3]

    again = kedro_run(project, "--pipelines=atari", "--env=ci")  # over: nothing to do, nothing logged twice
    assert again.returncode == 0
    assert [m.step for m in client.get_metric_history(run.info.run_id, "env_steps")] == [1, 2, 3]


def test_a_whole_run_under_torchrun_ends_on_every_rank(project: Path) -> None:
    """``python -m diamond_kedro`` is the same run command: both ranks stop after the last epoch (the committed
    report's ``run_is_over``, the same on every rank), rank 0 alone wrote and logged."""
    cmd = loopback_only([str(BIN / "torchrun"), "--standalone", "--nproc-per-node=2", "-m", "diamond_kedro",
                         "--pipelines=atari", "--env=ci"])
    env = project_env()
    env.update(PYTHONPATH=str(project / "src"), OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo")
    proc = subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    metrics = json.loads((project / RUN / "metrics.json").read_text())
    assert metrics["epoch"] == 3 and metrics["env_steps"] == 300 and "final_return_mean" in metrics
    client = mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    (run,) = client.search_runs(client.get_experiment_by_name("diamond-atari").experiment_id)
    assert [m.step for m in client.get_metric_history(run.info.run_id, "env_steps")] == [1, 2, 3]


def test_the_loop_holds_the_run_folder_between_epochs(tmp_path: Path) -> None:
    from diamond_kedro.utils import run_lock

    folder = tmp_path / "runs" / "k"
    params = {"run.root": str(tmp_path / "runs")}
    held: list[bool] = []

    def session():
        held.append(run_lock.is_locked(folder))
        return {"epoch_metrics": EpochReport(epoch=len(held), run_key="k", params=params, run_is_over=len(held) == 3)}

    project_cli.run_epochs(session)
    assert held == [False, True, True]  # from the first commit on (the run's own lock covers its sessions)
    assert not run_lock.is_locked(folder)  # given back at the end


def test_a_whole_run_killed_in_its_second_epoch_resumes_to_the_same_end(project: Path) -> None:
    """SIGKILL while the loop's second epoch trains (its collection on disk, uncommitted); the same command again
    rolls it back, finishes the run, and MLflow has each epoch once."""
    cmd = [str(BIN / "kedro"), "run", "--pipelines=atari", "--env=ci", "--params=denoiser.training.steps_per_epoch=100000"]
    proc = subprocess.Popen(cmd, cwd=project, env=project_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    metrics, manifest = project / RUN / "metrics.json", project / RUN / "replay" / "train" / "manifest.json"
    deadline, committed = time.time() + 600, None
    try:
        while time.time() < deadline:
            assert proc.poll() is None, "the run ended before it could be killed"
            if committed is None and metrics.is_file():
                committed = json.loads(metrics.read_text())["env_steps"]  # epoch 1 (the long first training) is in
            elif committed is not None and json.loads(manifest.read_text())["num_steps"] > committed:
                break  # epoch 2 collected, now in its 100000-step denoiser phase
            time.sleep(0.2)
        else:
            raise AssertionError("the second epoch never wrote its collection")
        time.sleep(1.0)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert json.loads(metrics.read_text())["epoch"] == 1

    kedro_run(project, "--pipelines=atari", "--env=ci", timeout=900)
    final = json.loads(metrics.read_text())
    assert final["epoch"] == 3 and final["env_steps"] == 300 and "final_return_mean" in final
    client = mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    (run,) = client.search_runs(client.get_experiment_by_name("diamond-atari").experiment_id)
    assert [m.step for m in client.get_metric_history(run.info.run_id, "env_steps")] == [1, 2, 3]
    assert [m.value for m in client.get_metric_history(run.info.run_id, "env_steps")][-1] == 300
