"""The two ends every Atari pipeline shares: open the run (and begin an epoch), commit it.

A module, not a pipeline folder: ``find_pipelines`` only registers folders."""

from __future__ import annotations

import logging
from functools import partial, update_wrapper
from typing import Any

from kedro.pipeline import Pipeline, node, pipeline

from diamond_kedro.config import parse_config
from diamond_kedro.reporting import EpochReport
from diamond_kedro.training.run import AtariRun

log = logging.getLogger(__name__)


def open_run(parameters: dict[str, Any], game: str | None = None) -> AtariRun:
    """Validate the parameters, load the run's committed state (or start a new run) and begin an epoch.

    ``game`` (set by the namespaced per-game copies of the pipeline) replaces ``env.game``."""
    if game is not None:
        parameters = {**parameters, "env": {**parameters.get("env", {}), "game": game}}
    return AtariRun.open_epoch(parse_config(parameters))


def commit_run(run: AtariRun) -> EpochReport:
    """Write the epoch's state atomically, update the DVC metrics and send the report to MLflow."""
    try:
        return run.commit()
    finally:
        run.close()



RUN_IN, RUN_OUT = "run_in", "run_out"


def open_pipeline(game: str | None = None) -> Pipeline:
    func = open_run if game is None else update_wrapper(partial(open_run, game=game), open_run)
    return Pipeline([node(func, inputs="parameters", outputs="run_opened", name="open_run")])


def commit_pipeline(run_dataset: str) -> Pipeline:
    return Pipeline([node(commit_run, inputs=run_dataset, outputs="epoch_metrics", name="commit_run")])


def chain(*stages: tuple[str, Pipeline], game: str | None = None) -> Pipeline:
    """Thread the run object through stage fragments (each reads ``run_in`` and writes ``run_out``).

    Returns open -> stage_1 -> ... -> stage_n -> commit, with the run dataset after stage ``name`` called
    ``run_<name>`` so that the DAG (and kedro viz) reads as the epoch's phases.
    """
    current = "run_opened"
    parts = [open_pipeline(game)]
    for name, fragment in stages:
        out = f"run_{name}"
        parts.append(pipeline(fragment, inputs={RUN_IN: current}, outputs={RUN_OUT: out}))
        current = out
    parts.append(commit_pipeline(current))
    return sum(parts, Pipeline([]))
