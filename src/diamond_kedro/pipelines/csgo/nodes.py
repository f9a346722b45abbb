"""Nodes of one CS:GO training epoch: open the run, train the denoiser, train the upsampler, evaluate, commit.

The nodes take ``params:csgo`` (never the whole ``parameters`` dict, which the Atari validation keys on)."""

from __future__ import annotations

from typing import Any

from diamond_kedro.csgo.config import parse_csgo_config
from diamond_kedro.training.csgo_run import CsgoRun


def open_csgo_run(csgo: dict[str, Any]) -> CsgoRun:
    """Validate ``csgo``, load the committed state (or start the run) and begin an epoch."""
    return CsgoRun.open_epoch(parse_csgo_config(csgo))


def train_csgo_denoiser(run: CsgoRun) -> CsgoRun:
    run.train_denoiser()
    return run


def train_csgo_upsampler(run: CsgoRun) -> CsgoRun:
    run.train_upsampler()
    return run


def evaluate_csgo(run: CsgoRun) -> CsgoRun:
    """Test losses + imagination video every ``evaluate.every`` epochs (and at the last)."""
    run.evaluate()
    return run


def commit_csgo_run(run: CsgoRun) -> dict[str, float]:
    """Write ``state.pt`` atomically, update the DVC metrics, send the epoch's report to MLflow."""
    try:
        return dict(run.commit().metrics)
    finally:
        run.close()  # the run folder's lock
