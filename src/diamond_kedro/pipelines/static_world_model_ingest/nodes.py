from __future__ import annotations

from dataclasses import asdict
from typing import Any

from diamond_kedro.datasets.config import parse_static_config
from diamond_kedro.datasets.ingest import ingest_dataset


def ingest_static_dataset(static_world_model: dict[str, Any]) -> dict[str, Any]:
    """Ingest (or resume ingesting) ``dataset.path`` into ``dataset.out_dir``; returns the summary."""
    return asdict(ingest_dataset(parse_static_config(static_world_model).dataset))
