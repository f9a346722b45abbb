"""Every MLflow experiment the project logs to is tagged so MLflow's UI opens its model-training view."""

from __future__ import annotations

from pathlib import Path

from mlflow import MlflowClient

from diamond_kedro.reporting import MLFLOW_EXPERIMENT_TAGS, mlflow_experiment_id

KIND = "mlflow.experimentKind"


def test_experiments_are_created_or_tagged_as_custom_model_development(tmp_path: Path) -> None:
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    new = mlflow_experiment_id(client, "diamond-atari")
    assert client.get_experiment(new).tags[KIND] == "custom_model_development"
    assert mlflow_experiment_id(client, "diamond-atari") == new  # found, not created twice

    old = client.create_experiment("diamond-csgo")  # made before the tag (or by hand)
    assert KIND not in client.get_experiment(old).tags
    assert mlflow_experiment_id(client, "diamond-csgo") == old
    assert client.get_experiment(old).tags[KIND] == MLFLOW_EXPERIMENT_TAGS[KIND]

    mine = client.create_experiment("diamond-play", tags={KIND: "genai_development"})
    mlflow_experiment_id(client, "diamond-play")
    assert client.get_experiment(mine).tags[KIND] == "genai_development"  # a user's own choice stays


def test_the_sweep_experiment_is_tagged(tmp_path: Path, monkeypatch) -> None:
    from types import SimpleNamespace

    from diamond_kedro.sweep.cli import prepare_mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.delenv("DIAMOND_MLFLOW", raising=False)
    prepare_mlflow(SimpleNamespace(tracking_uri=uri, experiment_name="diamond-atari", artifact_location="mlruns",
                                   project=str(tmp_path)))
    experiment = MlflowClient(tracking_uri=uri).get_experiment_by_name("diamond-atari")
    assert experiment.tags[KIND] == "custom_model_development"
    assert experiment.artifact_location == (tmp_path / "mlruns").resolve().as_uri()  # relative to the project
