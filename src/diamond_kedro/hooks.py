"""Kedro hooks: parameter validation before any work, and MLflow tracking at the edge.

Why not kedro-mlflow: it opens one MLflow run per ``kedro run``, while a DIAMOND training run spans many
``kedro run --pipeline=atari_epoch`` calls (one per epoch, resumable). We want one MLflow run per training
run (game, seed, name) that every epoch resumes, with metrics at ``step = epoch``. That takes ~100 lines.

CS:GO: pipelines whose nodes take ``params:csgo`` have that section validated (``parse_csgo_config``); those
with training nodes (tag ``csgo_train``) get one MLflow run per training run ``csgo_<name>`` in the experiment
``csgo_experiment_name`` (default ``diamond-csgo``), keyed by the same tag as the Atari runs.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from kedro.framework.hooks import hook_impl

from diamond_kedro.config import parse_config
from diamond_kedro.reporting import EpochReport, add_sink, flatten, remove_sink

log = logging.getLogger(__name__)

RUN_KEY_TAG = "diamond.run_key"


CSGO_PARAMS = "params:csgo"
CSGO_TRAIN_TAG = "csgo_train"  # diamond_kedro.pipelines.csgo.pipeline.TRAIN_TAG


def _uses_atari_parameters(pipeline: Any) -> bool:
    return "parameters" in pipeline.inputs()


def _uses_csgo_parameters(pipeline: Any) -> bool:
    return CSGO_PARAMS in pipeline.inputs()


def _trains_csgo(pipeline: Any) -> bool:
    return _uses_csgo_parameters(pipeline) and any(CSGO_TRAIN_TAG in n.tags for n in pipeline.nodes)


class ValidateParametersHook:
    """Fail before the first node runs when a parameter is missing, unknown or out of range."""

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        if _uses_atari_parameters(pipeline):
            parse_config(catalog.load("parameters"))
        if _uses_csgo_parameters(pipeline):
            from diamond_kedro.csgo.config import parse_csgo_config

            parse_csgo_config(catalog.load(CSGO_PARAMS))


class MlflowTrackingHook:
    """One MLflow run per training run; each committed epoch's ``EpochReport`` is logged at step = epoch."""

    def __init__(self) -> None:
        self._conf: dict[str, Any] = {}
        self._active = False

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        try:
            self._conf = dict(context.config_loader["mlflow"])
        except KeyError:
            self._conf = {}

    def _enabled(self) -> bool:
        if os.environ.get("DIAMOND_MLFLOW", "").lower() in {"0", "false", "off"}:
            return False
        return bool(self._conf.get("enabled", True))

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        if not self._enabled():
            return
        if _uses_atari_parameters(pipeline):
            from diamond_kedro.training.run import run_key

            cfg = parse_config(catalog.load("parameters"))
            self._start(self._conf.get("experiment_name", "diamond-atari"), run_key(cfg), cfg.model_dump())
        elif _trains_csgo(pipeline):
            from diamond_kedro.csgo.config import parse_csgo_config
            from diamond_kedro.training.csgo_run import csgo_run_key

            cfg = parse_csgo_config(catalog.load(CSGO_PARAMS))
            self._start(self._conf.get("csgo_experiment_name", "diamond-csgo"), csgo_run_key(cfg), cfg.model_dump())

    def _start(self, name: str, key: str, config: dict[str, Any]) -> None:
        """Resume the MLflow run tagged ``key`` in experiment ``name`` (or create it, logging ``config``)."""
        import mlflow

        uri = os.environ.get("MLFLOW_TRACKING_URI") or self._conf.get("tracking_uri", "sqlite:///mlflow.db")
        mlflow.set_tracking_uri(uri)
        experiment = mlflow.get_experiment_by_name(name)
        if experiment is None:
            location = self._conf.get("artifact_location")
            location = Path(location).resolve().as_uri() if location else None
            experiment_id = mlflow.create_experiment(name, artifact_location=location)
        else:
            experiment_id = experiment.experiment_id

        found = mlflow.search_runs(
            experiment_ids=[experiment_id],
            filter_string=f"tags.`{RUN_KEY_TAG}` = '{key}'",
            output_format="list",
            max_results=1,
        )
        if found:
            mlflow.start_run(run_id=found[0].info.run_id)
            log.info("MLflow: resuming run %s (%s)", key, found[0].info.run_id)
        else:
            mlflow.start_run(experiment_id=experiment_id, run_name=key, tags={RUN_KEY_TAG: key})
            params = flatten(config)
            items = list(params.items())
            for i in range(0, len(items), 90):  # MLflow caps one log_params batch at 100
                mlflow.log_params(dict(items[i : i + 90]))
            log.info("MLflow: new run %s (%s)", key, mlflow.active_run().info.run_id)
        add_sink(self._log)
        self._active = True

    @staticmethod
    def _log(report: EpochReport) -> None:
        import mlflow

        report.log_to_mlflow(mlflow)

    def _close(self, status: str) -> None:
        if self._active:
            import mlflow

            remove_sink(self._log)
            mlflow.end_run(status=status)
            self._active = False

    @hook_impl
    def after_pipeline_run(self) -> None:
        self._close("FINISHED")

    @hook_impl
    def on_pipeline_error(self) -> None:
        self._close("FAILED")
