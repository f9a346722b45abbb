"""`csgo_ingest` then two `csgo` epochs through the real Kedro project (ci profile) on synthetic files."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow

from tests.pipelines.conftest import kedro_run

from .synthetic import published_layout_project
from diamond_kedro.utils.state_file import load_state_file

RUN = Path("data/runs/csgo_ci")
T = 12


def test_ingest_then_two_epochs_log_to_one_mlflow_run(tmp_path: Path) -> None:
    project, data = published_layout_project(tmp_path, T)

    kedro_run(project, "--pipelines=csgo_ingest", "--env=ci", f"--params={data}")
    index = json.loads((project / "data/csgo/index.json").read_text())
    assert index["splits"] == {"train": ["1-3/hdf5_dm_july2021_1.hdf5", "1-3/hdf5_dm_july2021_3.hdf5"],
                               "test": ["1-3/hdf5_dm_july2021_2.hdf5"]}

    kedro_run(project, "--pipelines=csgo", "--env=ci")
    kedro_run(project, "--pipelines=csgo", "--env=ci")
    state = load_state_file(project / RUN / "checkpoints/state.pt")
    assert state["counters"]["epoch"] == 2
    # ci: 2 optimiser steps per epoch per model
    assert state["counters"]["num_batch_train"] == {"denoiser": 4, "upsampler": 4}
    assert state["schedulers"]["denoiser"]["last_epoch"] == 4
    assert (project / RUN / ".run_is_over").exists()  # ci: num_epochs = 2

    client = mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    assert client.get_experiment_by_name("diamond-atari") is None  # the Atari path is untouched
    runs = client.search_runs(client.get_experiment_by_name("diamond-csgo").experiment_id)
    assert len(runs) == 1 and runs[0].data.tags["diamond.run_key"] == "csgo_ci"
    run_id = runs[0].info.run_id

    def steps(key: str) -> list[int]:
        return sorted(m.step for m in client.get_metric_history(run_id, key))

    assert steps("denoiser/train/loss_denoising") == [1, 2]
    assert steps("upsampler/train/loss_denoising") == [1, 2]
    assert steps("denoiser/test/loss_denoising") == [2]  # ci: evaluate every 2 epochs
    assert steps("upsampler/test/loss_denoising") == [2]
    assert [a.path for a in client.list_artifacts(run_id, "media")] == ["media/imagination_epoch_00002.mp4"]
    assert runs[0].data.params["denoiser.training.grad_acc_steps"] == "2"

    # a bad parameter is named before any work
    proc = kedro_run(project, "--pipelines=csgo", "--env=ci", "--params=csgo.denoiser.training.lr=-1", check=False)
    assert proc.returncode != 0 and "csgo.denoiser.training.lr" in proc.stdout + proc.stderr
