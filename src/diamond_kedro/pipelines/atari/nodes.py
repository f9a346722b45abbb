"""A whole run: epochs until the env-step budget and the final epochs are done (spec §6.1)."""

from __future__ import annotations

from typing import Any

from diamond_kedro.config import parse_config
from diamond_kedro.training.run import AtariRun


def train_run(parameters: dict[str, Any]) -> dict[str, float]:
    """Run (or resume) epochs until the run is over. Each epoch is committed and reported on its own,
    exactly as ``atari_epoch`` does, so a killed run resumes at its last committed epoch."""
    run = AtariRun.open(parse_config(parameters))
    try:
        while not run.is_over:
            run.run_epoch()
        return dict(run.final_metrics)
    finally:
        run.close()
