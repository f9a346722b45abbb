from __future__ import annotations

from dataclasses import asdict
from typing import Any

from diamond_kedro.datasets.config import parse_static_config
from diamond_kedro.datasets.ingest import ingest_dataset
from diamond_kedro.training.csgo_run import IngestedDataset, open_ingested_dataset


def ingest_static_dataset(static_world_model: dict[str, Any]) -> tuple[IngestedDataset, dict[str, Any]]:
    """Ingest (or resume ingesting) ``dataset.path`` into ``dataset.out_dir``; returns the dataset
    (``static_dataset``, what ``static_world_model`` trains on) and the summary."""
    cfg = parse_static_config(static_world_model)
    summary = asdict(ingest_dataset(cfg.dataset))
    return open_ingested_dataset(cfg, require_episodes=False), summary
