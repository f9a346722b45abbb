"""Nodes of one static world-model epoch. Only opening differs from the CS:GO pipeline (another parameter
section); training, evaluation and commit are the CS:GO nodes, which work on any ``CsgoRun``."""

from __future__ import annotations

from typing import Any

from diamond_kedro.datasets.config import parse_static_config
from diamond_kedro.training.csgo_run import StaticWorldModelRun


def open_static_world_model_run(static_world_model: dict[str, Any]) -> StaticWorldModelRun:
    """Validate the parameters, load the committed state (or start the run) and begin an epoch."""
    return StaticWorldModelRun.open_epoch(parse_static_config(static_world_model))
