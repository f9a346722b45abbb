"""What an epoch reports: metrics, pictures, files; and where reports go.

A training run gathers one ``EpochReport`` per epoch and, once the epoch is committed to disk, hands it to
every registered sink (``emit``). The Kedro MLflow hook registers a sink that logs at ``step = epoch`` into the
MLflow run of the report's ``run_key``; a notebook or test can register its own. The library itself never
talks to MLflow.
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

ReportSink = Callable[["EpochReport"], None]
_SINKS: list[ReportSink] = []


def add_sink(sink: ReportSink) -> None:
    _SINKS.append(sink)


def remove_sink(sink: ReportSink) -> None:
    if sink in _SINKS:
        _SINKS.remove(sink)


def emit(report: "EpochReport") -> None:
    """Send a committed epoch's report to every sink (MLflow, notebooks, tests)."""
    for sink in list(_SINKS):
        sink(report)


# MLflow's UI picks its view from this experiment tag: without it MLflow 3 may file a short run under
# "GenAI -> Evaluation runs"; "custom_model_development" gives the model-training view (metrics, artifacts).
MLFLOW_EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}


def sqlite_file(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` tracking URI (relative or absolute), else None."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix):
        return None
    path = uri[len(prefix) :].split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


@contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """Held while a process creates a SQLite store's schema or an experiment: two ``kedro run`` s starting
    on a fresh ``mlflow.db`` would otherwise both run MLflow's migrations ("duplicate column name") or
    both create the experiment. A lock file next to the database (``mlflow.db.lock``); other stores
    (servers) serialise this themselves."""
    db = sqlite_file(uri)
    if db is None:
        yield
        return
    from filelock import FileLock

    with FileLock(f"{db}.lock"):
        yield


def tracking_client(uri: str) -> Any:
    """An ``MlflowClient`` on ``uri`` whose store exists (created, or migrated, by one process at a time)."""
    from mlflow import MlflowClient

    with store_lock(uri):  # making the client opens the store (MLflow creates or upgrades its schema then)
        client = MlflowClient(tracking_uri=uri)
        client.search_experiments(max_results=1)  # (and should a later MLflow open it lazily: here)
    return client


def mlflow_experiment_id(client: Any, name: str, artifact_location: str | None = None) -> str:
    """The id of MLflow experiment ``name`` (``client``: an ``MlflowClient``), created with
    :data:`MLFLOW_EXPERIMENT_TAGS` if missing; an existing experiment without the tag gets it (one a user
    tagged otherwise is left alone). Every experiment the project logs to (training runs, report, sweep,
    play) goes through here."""
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            return client.create_experiment(name, artifact_location=artifact_location, tags=MLFLOW_EXPERIMENT_TAGS)
        except Exception:  # another process created it first (runs starting together): use theirs
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
    tags = experiment.tags or {}
    for key, value in MLFLOW_EXPERIMENT_TAGS.items():
        if key not in tags:
            client.set_experiment_tag(experiment.experiment_id, key, value)
    return experiment.experiment_id


def tracked_experiment(uri: str, name: str, artifact_location: str | None = None) -> tuple[Any, str]:
    """(client, experiment id) of experiment ``name`` on the store ``uri``, the store and the experiment
    created by one process at a time (``store_lock``): what the report, the sweep and ``play --log-mlflow``
    open before they log."""
    client = tracking_client(uri)
    with store_lock(uri):
        return client, mlflow_experiment_id(client, name, artifact_location)


def flatten(tree: dict[str, Any], prefix: str = "", sep: str = ".") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists are kept as values)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{sep}{key}" if prefix else str(key)
        if isinstance(value, dict):
            out.update(flatten(value, name, sep))
        else:
            out[name] = value
    return out


@dataclass
class EpochReport:
    """Metrics (``component/split/name`` keys, spec §6.5), images (HWC uint8) and artifact files of one
    epoch of the training run ``run_key`` (``kind`` "atari" or "csgo"; ``params`` its flattened config)."""

    epoch: int
    run_key: str = ""
    kind: str = "atari"
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    images: dict[str, np.ndarray] = field(default_factory=dict)
    artifacts: list[tuple[str, Path]] = field(default_factory=list)  # (artifact sub-folder, file)
    tags: dict[str, str] = field(default_factory=dict)  # run tags set with this epoch (latest values win)
    # when the report was made (ms since the epoch): every metric of it is logged with this timestamp, so a
    # report sent again after a crash writes rows identical to the first ones
    timestamp_ms: int = field(default_factory=lambda: int(time.time() * 1000))
    # set at commit: this epoch was the run's last (the ``atari`` loop in cli.py stops on it; every rank agrees)
    run_is_over: bool = False

    def merge(self, other: "EpochReport") -> None:
        self.metrics.update(other.metrics)
        self.images.update(other.images)
        self.artifacts.extend(other.artifacts)
        self.tags.update(other.tags)

    def add(self, prefix: str, metrics: dict[str, float]) -> None:
        for name, value in metrics.items():
            self.metrics[f"{prefix}/{name}" if prefix else name] = float(value)

    def finite_metrics(self) -> dict[str, float]:
        return {k: v for k, v in self.metrics.items() if math.isfinite(v)}

    def log_to_mlflow(self, client: Any, run_id: str) -> None:
        """Log into MLflow run ``run_id`` through an ``mlflow.MlflowClient`` (metrics at step = epoch).

        Idempotent per epoch: a report sent again (a crash after some of it was logged, before the run
        recorded that it was) adds nothing twice. The run's ``diamond.logged_epoch`` tag, set last, says a
        report was logged whole; short of it, each metric batch (one transaction in MLflow's stores) is
        skipped when its first metric is already in the run's history at this step."""
        from mlflow.entities import Metric

        run = client.get_run(run_id)
        done = run.data.tags.get(LOGGED_EPOCH_TAG)
        if done is not None and done.isdigit() and int(done) >= self.epoch:
            return
        stamp = self.timestamp_ms
        metrics = [Metric(k, v, stamp, self.epoch) for k, v in self.finite_metrics().items()]
        for i in range(0, len(metrics), 500):  # MLflow caps a batch at 1000 entries
            batch = metrics[i : i + 500]
            if not _logged_at(client, run_id, batch[0].key, self.epoch):
                client.log_batch(run_id, metrics=batch)
        for key, image in self.images.items():
            client.log_image(run_id, image, key=key, step=self.epoch)
        for folder, path in self.artifacts:
            if Path(path).exists():
                client.log_artifact(run_id, str(path), artifact_path=folder)
        for key, value in self.tags.items():
            client.set_tag(run_id, key, value)
        client.set_tag(run_id, LOGGED_EPOCH_TAG, str(self.epoch))


LOGGED_EPOCH_TAG = "diamond.logged_epoch"  # the last epoch whose report was logged whole


def _logged_at(client: Any, run_id: str, key: str, step: int) -> bool:
    """Whether the run's history of metric ``key`` has a value at ``step``."""
    return any(m.step == step for m in client.get_metric_history(run_id, key))
