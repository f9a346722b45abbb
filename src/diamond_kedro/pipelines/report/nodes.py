"""Nodes of the report pipeline: thin wrappers around ``diamond_kedro.evaluation.report``."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pandas as pd

from diamond_kedro.evaluation.report import Report, ReportConfig, build_report, load_runs, log_report, write_report

log = logging.getLogger(__name__)

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
DEFAULT_EXPERIMENT = "diamond-atari"


def _mlflow_conf() -> dict[str, Any]:
    """The ``mlflow`` config the project's MLflow hook loaded for this session (honours ``--env``), else
    ``conf/base/mlflow.yml`` + ``conf/local`` read from the working directory."""
    from kedro.framework.project import settings

    from diamond_kedro.hooks import MlflowTrackingHook

    for hook in getattr(settings, "HOOKS", ()):
        if isinstance(hook, MlflowTrackingHook) and hook.conf:
            return dict(hook.conf)
    conf = Path.cwd() / "conf"
    if not conf.is_dir():
        return {}
    from kedro.config import OmegaConfigLoader

    loader = OmegaConfigLoader(
        str(conf), base_env="base", default_run_env="local", config_patterns={"mlflow": ["mlflow*", "mlflow*/**"]},
        merge_strategy={"mlflow": "soft"},
    )
    try:
        return dict(loader["mlflow"])
    except KeyError:
        return {}


def resolve_config(params: dict[str, Any]) -> tuple[ReportConfig, str | None]:
    """Validated report settings with the tracking URI and experiment filled in: ``report.tracking_uri``,
    else ``$MLFLOW_TRACKING_URI``, else ``mlflow.yml``'s. Also returns ``mlflow.yml``'s artifact location."""
    cfg = ReportConfig.from_params(params)
    mlflow_conf = _mlflow_conf()
    if cfg.tracking_uri is None:
        cfg.tracking_uri = os.environ.get("MLFLOW_TRACKING_URI") or mlflow_conf.get("tracking_uri", DEFAULT_TRACKING_URI)
    if cfg.experiment_name is None:
        cfg.experiment_name = mlflow_conf.get("experiment_name", DEFAULT_EXPERIMENT)
    return cfg, mlflow_conf.get("artifact_location")


def load_tracked_runs(params: dict[str, Any]) -> pd.DataFrame:
    cfg, _ = resolve_config(params)
    runs = load_runs(cfg.tracking_uri, cfg.experiment_name, cfg.run_names)
    log.info("report: %d training run(s) in %s (%s)", len(runs), cfg.experiment_name, cfg.tracking_uri)
    return runs


def build_report_node(runs: pd.DataFrame, params: dict[str, Any]) -> Report:
    cfg, _ = resolve_config(params)
    report = build_report(runs, reps=cfg.bootstrap_reps, confidence=cfg.confidence, seed=cfg.seed)
    write_report(report, cfg.output_dir, reps=cfg.bootstrap_reps, confidence=cfg.confidence, seed=cfg.seed)
    for note in report.notes:
        log.warning("report: %s", note)
    log.info("report written to %s", cfg.output_dir)
    return report


def log_report_node(report: Report, params: dict[str, Any]) -> str | None:
    cfg, artifact_location = resolve_config(params)
    if not cfg.log_to_mlflow or os.environ.get("DIAMOND_MLFLOW", "").lower() in {"0", "false", "off"}:
        return None
    run_id = log_report(report, cfg.tracking_uri, cfg.experiment_name, cfg.mlflow_run_name, artifact_location)
    log.info("report logged to MLflow run %s (%s)", cfg.mlflow_run_name, run_id)
    return run_id
