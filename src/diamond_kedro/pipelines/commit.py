"""The one commit step of every training pipeline (Atari and the static-dataset family)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kedro.pipeline import Pipeline, node

from diamond_kedro.reporting import EpochReport
from diamond_kedro.training.run_common import METRIC_PREFIXES, Component, MissingComponent, RunState


def commit_epoch(run_state: RunState, media: list[Path] | None = None, **outputs: Any) -> EpochReport:
    """Make the epoch durable: the run's models, optimisers, counters, RNGs (and the collector) in one atomic
    ``checkpoints/state.pt``, the replay chunks staged with the epoch's number now committed; then the DVC
    metrics and the report (MLflow). ``outputs``: the epoch's outputs by role (``denoiser``: the trained
    component, ``denoiser_metrics``: its metrics, ...); components are checked to be the run's own."""
    run = run_state.run
    metrics = {name: value for name, value in outputs.items() if name in METRIC_PREFIXES}
    for name, value in outputs.items():
        if isinstance(value, Component):
            run.own(value)
        elif name not in METRIC_PREFIXES and not isinstance(value, MissingComponent) and not _belongs(run, value):
            raise ValueError(f"commit_epoch: {name} is not an artefact of run {run.key}")
    return run.commit(metrics, media or [])


def _belongs(run: Any, value: Any) -> bool:
    return any(value is getattr(run, attr, None) for attr in ("replay_train", "replay_test", "collector", "dataset"))


def create_pipeline(outputs: dict[str, str], **kwargs: Any) -> Pipeline:
    """``commit_epoch`` reading ``run_state``, ``media`` and ``outputs`` (role -> dataset name)."""
    return Pipeline(
        [node(commit_epoch, inputs={"run_state": "run_state", "media": "media", **outputs}, outputs="epoch_metrics",
              name="commit_epoch")]
    )
