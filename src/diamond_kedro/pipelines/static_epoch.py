"""One epoch of a static-dataset world model (CS:GO, Minari, video + actions), built from the same parts as
the Atari epoch: the world-model training pipeline (``world_model.py``: the same ``train_denoiser`` node,
with the ``upsampler`` beside it instead of the reward/end model) fed by the ingested dataset through input
mapping, an evaluation, and the one ``commit_epoch``. Under a namespace (``csgo``, ``static_world_model``),
so each family's run has its own datasets (``csgo.denoiser``, ...)::

    csgo.denoiser,  csgo_dataset -> csgo.train_denoiser  -> csgo.denoiser_trained
    csgo.upsampler, csgo_dataset -> csgo.train_upsampler -> csgo.upsampler_trained
    csgo.denoiser_trained, csgo.upsampler_trained, csgo_dataset -> csgo.evaluate_world_model -> csgo.media
    csgo.run_state + every epoch output -> csgo.commit_epoch -> csgo.epoch_metrics
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kedro.pipeline import Pipeline, node, pipeline

from diamond_kedro.pipelines import commit, world_model
from diamond_kedro.training.run_common import Component

COMMIT_INPUTS = {
    "denoiser": "denoiser_trained",
    "upsampler": "upsampler_trained",
    "denoiser_metrics": "denoiser_metrics",
    "upsampler_metrics": "upsampler_metrics",
    "evaluate_metrics": "evaluate_metrics",
    "dataset": "replay_train",
}


def evaluate_world_model(
    denoiser: Component, upsampler: Component | None, dataset: Any
) -> tuple[dict[str, float], list[Path]]:
    """Every ``evaluate.every`` epochs and at the last: test losses on ``dataset``'s test split, fidelity and
    an imagination video of a test episode. Returns ``evaluate_metrics`` and the epoch's media."""
    return denoiser.run.evaluate(denoiser, *([upsampler] if isinstance(upsampler, Component) else []), dataset=dataset)


def create_pipeline(namespace: str, dataset: str, tag: str) -> Pipeline:
    """The epoch of the run in ``namespace``, trained on the catalog's ``dataset`` (an ingest's output)."""
    epoch = Pipeline(
        [
            world_model.create_pipeline(("denoiser", "upsampler")),
            node(evaluate_world_model, inputs=["denoiser_trained", "upsampler_trained", "replay_train"],
                 outputs=["evaluate_metrics", "media"], name="evaluate_world_model"),
            commit.create_pipeline(COMMIT_INPUTS),
        ],
        tags=[tag],
    )
    return pipeline(epoch, namespace=namespace, inputs={"replay_train": dataset})
