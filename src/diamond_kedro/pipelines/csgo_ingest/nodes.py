from __future__ import annotations

from dataclasses import asdict
from typing import Any

from diamond_kedro.csgo.config import parse_csgo_config
from diamond_kedro.csgo.ingest import ingest


def ingest_csgo(csgo: dict[str, Any]) -> dict[str, Any]:
    """Ingest (or resume ingesting) ``csgo.data.source_dir`` into ``csgo.data.out_dir``; returns the summary."""
    d = parse_csgo_config(csgo).data
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
    return asdict(summary)
