from __future__ import annotations

from dataclasses import asdict
from typing import Any

from diamond_kedro.csgo.config import parse_csgo_config
from diamond_kedro.csgo.ingest import ingest
from diamond_kedro.training.csgo_run import IngestedDataset, open_ingested_dataset


def ingest_csgo(csgo: dict[str, Any]) -> tuple[IngestedDataset, dict[str, Any]]:
    """Ingest (or resume ingesting) ``csgo.data.source_dir`` into ``csgo.data.out_dir``; returns the dataset
    (``csgo_dataset``, what the ``csgo`` pipeline trains on) and the summary."""
    cfg = parse_csgo_config(csgo)
    d = cfg.data
    summary = ingest(
        d.source_dir,
        d.out_dir,
        test_split_file=d.test_split_file,
        frames_per_file=d.frames_per_file,
        frame_size=d.frame_size,
        low_res_size=d.low_res_size,
        on_bad_file=d.on_bad_file,
        fsync=d.fsync,
    )
    return open_ingested_dataset(cfg, require_episodes=False), asdict(summary)
