"""Project pipelines: ``collect``, ``train_denoiser``, ``train_rew_end_model``, ``train_actor_critic``,
``evaluate`` (each standalone: open the run, do that phase, commit), ``atari_epoch`` (one epoch of
Algorithm 1) and ``atari`` (a whole run)."""

from __future__ import annotations

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline


def register_pipelines() -> dict[str, Pipeline]:
    pipelines = find_pipelines(raise_errors=True)
    pipelines["__default__"] = pipelines["atari_epoch"]
    return pipelines
