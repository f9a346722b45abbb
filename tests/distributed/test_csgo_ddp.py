"""The CS:GO pipeline under ``torchrun --nproc-per-node=2`` (gloo): both models trained data-parallel with
gradient accumulation, rank 0 alone writing the state, the video and MLflow."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import mlflow
import torch

from ..csgo.synthetic import published_layout_project
from ..isolation import loopback_only
from ..pipelines.conftest import BIN, kedro_run, project_env
from diamond_kedro.utils.state_file import load_state_file

T = 12


def _torchrun(project: Path, params: str) -> subprocess.CompletedProcess:
    cmd = loopback_only([str(BIN / "torchrun"), "--standalone", "--nproc-per-node=2", "-m", "diamond_kedro",
                         "--pipelines=csgo", "--env=ci", f"--params={params}"])
    env = project_env()
    env.update(PYTHONPATH=str(project / "src"), OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo")
    return subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True, timeout=600)


def test_csgo_epochs_under_torchrun(tmp_path: Path) -> None:
    project, data = published_layout_project(tmp_path, T)
    kedro_run(project, "--pipelines=csgo_ingest", "--env=ci", f"--params={data}")

    # one epoch of 2 optimiser steps per model, each of 2 accumulated micro-batches of 2 (1 row per rank)
    proc = _torchrun(project, "csgo.upsampler.training.batch_size=2,csgo.run.num_epochs=1,csgo.evaluate.every=1")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    state = load_state_file(project / "data/runs/csgo_ci/checkpoints/state.pt")
    assert state["counters"]["epoch"] == 1
    assert state["counters"]["num_batch_train"] == {"denoiser": 2, "upsampler": 2}
    assert json.loads((project / "data/runs/csgo_ci/metrics.json").read_text())["epoch"] == 1

    client = mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    runs = client.search_runs(client.get_experiment_by_name("diamond-csgo").experiment_id)
    assert len(runs) == 1  # rank 1 logged nothing
    run_id = runs[0].info.run_id
    for key in ("denoiser/train/loss_denoising", "upsampler/train/loss_denoising", "denoiser/test/loss_denoising"):
        assert [m.step for m in client.get_metric_history(run_id, key)] == [1], key
    videos = list((project / "data/runs/csgo_ci/media").glob("imagination_epoch_*"))
    assert len(videos) == 1  # written once, by rank 0
