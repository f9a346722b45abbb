"""Project pipelines, one per package under ``pipelines/`` (found by ``find_pipelines``):

* Atari: ``collect``, ``train_denoiser``, ``train_rew_end_model``, ``train_actor_critic``, ``evaluate`` (each
  standalone: that node of ``atari_epoch`` and its ``commit_epoch``), ``atari_epoch`` (one epoch of
  Algorithm 1 over the run's named datasets, the default),
  ``atari`` (a whole run) and ``atari_games`` (one epoch of several games, by namespace);
* static world models: ``csgo_ingest`` / ``csgo`` (the CS:GO dataset) and ``static_world_model_ingest`` /
  ``static_world_model`` (your own gameplay: videos + action tables, Minari, CS:GO-layout HDF5);
* ``report``: the tables and plots of the tracked runs against the paper."""

from __future__ import annotations

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

from diamond_kedro.pipelines import atari_epoch


def register_pipelines() -> dict[str, Pipeline]:
    pipelines = find_pipelines(raise_errors=True)
    # Kedro may only discover the pipelines a command asked for, so build the default explicitly
    pipelines["__default__"] = pipelines.get("atari_epoch") or atari_epoch.create_pipeline()
    return pipelines
