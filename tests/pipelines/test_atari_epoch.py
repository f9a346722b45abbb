"""The product's main job, end to end on the real Breakout ROM with the ci profile."""

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

from .conftest import BIN, kedro_run, project_env
from diamond_kedro.utils.state_file import load_state_file

RUN = Path("data/runs/Breakout_seed0_ci")


def _state(project: Path) -> dict:
    return load_state_file(project / RUN / "checkpoints" / "state.pt")


def _metric_history(project: Path, key: str) -> list[tuple[int, float]]:
    client = mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    runs = client.search_runs(client.get_experiment_by_name("diamond-atari").experiment_id)
    assert len(runs) == 1, f"expected one MLflow run for the training run, found {len(runs)}"
    return sorted((m.step, m.value) for m in client.get_metric_history(runs[0].info.run_id, key))


def test_two_epochs_advance_grow_replay_and_log_to_one_mlflow_run(project: Path) -> None:
    kedro_run(project, "--pipelines=atari_epoch", "--env=ci")
    state1 = _state(project)
    steps1 = ReplayStore(project / RUN / "replay" / "train").num_steps
    assert state1["counters"]["epoch"] == 1
    # first epoch: initial collection (>= min_steps, a multiple of the increment) + one epoch's steps
    assert steps1 >= 200 + 50 and steps1 % 50 == 0
    assert state1["counters"]["env_steps"] == steps1

    kedro_run(project, "--pipelines=atari_epoch", "--env=ci")  # the other spelling
    state2 = _state(project)
    steps2 = ReplayStore(project / RUN / "replay" / "train").num_steps
    assert state2["counters"]["epoch"] == 2
    assert steps2 - steps1 == 50  # exactly collect.steps_per_epoch, nothing duplicated

    for key in ("denoiser/train/loss_denoising", "rew_end_model/train/loss_total", "actor_critic/train/loss_total",
                "env_steps"):
        history = _metric_history(project, key)
        assert [step for step, _ in history] == [1, 2], (key, history)
    assert dict(_metric_history(project, "env_steps")) == {1: steps1, 2: steps2}

    metrics = json.loads((project / RUN / "metrics.json").read_text())
    assert metrics["epoch"] == 2 and metrics["env_steps"] == steps2

    client = mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    (run,) = client.search_runs(client.get_experiment_by_name("diamond-atari").experiment_id)
    latest = run.data.tags["latest_agent_checkpoint"]
    assert latest.endswith("agent_epoch_00002.pt") and (project / latest).exists()


def test_killed_epoch_resumes_without_lost_or_duplicated_transitions(project: Path) -> None:
    kedro_run(project, "--pipelines=atari_epoch", "--env=ci")
    committed = ReplayStore(project / RUN / "replay" / "train").num_steps

    # Epoch 2 with a long denoiser phase, killed (SIGKILL) once its collection has hit the disk.
    cmd = [str(BIN / "kedro"), "run", "--pipelines=atari_epoch", "--env=ci",
           "--params=denoiser.training.steps_per_epoch=100000"]
    proc = subprocess.Popen(cmd, cwd=project, env=project_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 300
    manifest = project / RUN / "replay" / "train" / "manifest.json"
    while time.time() < deadline:
        if json.loads(manifest.read_text())["num_steps"] > committed:
            break
        assert proc.poll() is None, "the epoch ended before it could be killed"
        time.sleep(0.2)
    else:
        raise AssertionError("epoch 2 never wrote its collection")
    time.sleep(1.0)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert _state(project)["counters"]["epoch"] == 1  # nothing of epoch 2 was committed

    kedro_run(project, "--pipelines=atari_epoch", "--env=ci")
    state = _state(project)
    store = ReplayStore(project / RUN / "replay" / "train")
    assert state["counters"]["epoch"] == 2
    assert store.num_steps == committed + 50 == state["counters"]["env_steps"]
    assert int(store.lengths.sum()) == store.num_steps


def test_bad_parameter_fails_before_any_work_and_names_it(project: Path) -> None:
    proc = kedro_run(project, "--pipelines=atari_epoch", "--env=ci", "--params=denoiser.training.lr=-1", check=False)
    assert proc.returncode != 0
    assert "denoiser.training.lr" in proc.stdout + proc.stderr
    assert not (project / RUN).exists()  # nothing was collected or written

    proc = kedro_run(project, "--pipelines=atari_epoch", "--env=ci", "--params=env.game=NotAGame", check=False)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "env.game" in out and "NotAGame" in out and "Breakout" in out and "MsPacman" in out


def test_namespaced_copies_train_several_games_each_in_its_own_run(project: Path) -> None:
    kedro_run(project, "--pipelines=atari_games", "--namespaces=breakout,pong", "--env=ci")
    client = mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    runs = client.search_runs(client.get_experiment_by_name("diamond-atari").experiment_id)
    assert sorted(r.info.run_name for r in runs) == ["Breakout_seed0_ci", "Pong_seed0_ci"]
    for r in runs:
        game = r.info.run_name.split("_")[0]
        assert r.data.params["env.game"] == game
        state = load_state_file(project / "data" / "runs" / r.info.run_name / "checkpoints" / "state.pt")
        assert state["counters"]["epoch"] == 1
        steps = ReplayStore(project / "data" / "runs" / r.info.run_name / "replay" / "train").num_steps
        assert [(m.step, m.value) for m in client.get_metric_history(r.info.run_id, "env_steps")] == [(1, steps)]
    # Pong has 6 actions, Breakout 4: each run built its models for its own game
    pong = load_state_file(project / "data/runs/Pong_seed0_ci/checkpoints/state.pt")
    assert pong["num_actions"] == 6


def test_collect_pipeline_grows_the_store_without_training(project: Path) -> None:
    kedro_run(project, "--pipelines=collect", "--env=ci")
    state = _state(project)
    store = ReplayStore(project / RUN / "replay" / "train")
    assert state["counters"]["epoch"] == 1 and store.num_steps == state["counters"]["env_steps"] >= 250
    assert state["counters"]["num_batch_train"] == {"denoiser": 0, "rew_end_model": 0, "actor_critic": 0}


def test_changed_model_shape_fails_with_a_clear_error_and_keeps_the_run(project: Path) -> None:
    kedro_run(project, "--pipelines=atari_epoch", "--env=ci")
    before = (project / RUN / "checkpoints" / "state.pt").read_bytes()
    proc = kedro_run(project, "--pipelines=atari_epoch", "--env=ci", "--params=denoiser.model.cond_channels=32",
                     check=False)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "does not match the configured models" in out and "denoiser" in out
    assert (project / RUN / "checkpoints" / "state.pt").read_bytes() == before  # nothing overwritten

    state = project / RUN / "checkpoints" / "state.pt"
    state.write_bytes(b"not a checkpoint")
    proc = kedro_run(project, "--pipelines=atari_epoch", "--env=ci", check=False)
    assert proc.returncode != 0 and "cannot read run state" in proc.stdout + proc.stderr
