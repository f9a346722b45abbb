"""`static_world_model_ingest` then a `static_world_model` epoch through the real Kedro project (ci profile)."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pandas as pd
import yaml

from tests.pipelines.conftest import copy_project, kedro_run

from .synthetic import write_video


def test_video_ingest_then_an_epoch_logged_to_mlflow(tmp_path: Path) -> None:
    (tmp_path / "project").mkdir()
    project = copy_project(tmp_path / "project")
    raw = tmp_path / "raw"
    for v, n in ((0, 10), (1, 9), (2, 11)):
        write_video(raw / f"clip{v}.mp4", v, n)
        pd.DataFrame({"frame": range(n), "jump": [i % 2 for i in range(n)], "fire": [(i // 3) % 2 for i in range(n)]}
                     ).to_csv(raw / f"clip{v}.csv", index=False)
    # lists cannot go through --params (Kedro splits it at commas): the dataset goes in the profile's file,
    # as a user edits conf/base (or their own profile)
    ci = project / "conf/ci/parameters_static_world_model.yml"
    params = yaml.safe_load(ci.read_text())
    params["static_world_model"]["dataset"].update(name="myclips", path=str(raw), video={"action_columns": ["jump", "fire"]})
    ci.write_text(yaml.safe_dump(params))

    kedro_run(project, "--pipelines=static_world_model_ingest", "--env=ci")
    index = json.loads((project / "data/static/myclips/index.json").read_text())
    assert index["action"] == {"kind": "multi_hot", "dim": 2}
    # test_fraction 0.1 of 3 -> round(0.3) = 0, at least 1: sorted position int(0.5 * 3) = 1
    assert index["splits"] == {"train": ["clip0.mp4", "clip2.mp4"], "test": ["clip1.mp4"]}

    kedro_run(project, "--pipelines=static_world_model", "--env=ci")
    run_dir = project / "data/runs/myclips_ci"
    assert json.loads((run_dir / "metrics.json").read_text())["epoch"] == 1

    client = mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("diamond-myclips")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"  # the UI's model-training view
    runs = client.search_runs(experiment.experiment_id)
    assert len(runs) == 1 and runs[0].data.tags["diamond.run_key"] == "myclips_ci"
    logged = runs[0].data.metrics
    assert {"denoiser/train/loss_denoising", "denoiser/test/loss_denoising", "fidelity/psnr_h1",
            "fidelity/psnr_copy_last_h1"} <= set(logged)
    assert [a.path for a in client.list_artifacts(runs[0].info.run_id, "media")] == ["media/imagination_epoch_00001.mp4"]
    assert runs[0].data.params["dataset.video.action_columns"] == "['jump', 'fire']"

    # a bad parameter is named before any work
    proc = kedro_run(project, "--pipelines=static_world_model", "--env=ci",
                     "--params=static_world_model.dataset.test_fraction=1.5", check=False)
    assert proc.returncode != 0 and "static_world_model.dataset.test_fraction" in proc.stdout + proc.stderr
