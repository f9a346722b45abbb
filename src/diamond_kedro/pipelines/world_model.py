"""The world-model training pipeline, written once for every family (issue: one pipeline, data swapped by
input mapping).

``create_pipeline(components)`` trains each named component (``denoiser``, ``rew_end_model``, ``upsampler``)
on the free input ``replay_train``: one node per component, all of them the one function
:func:`train_world_model_component`. The Atari epoch maps ``replay_train`` to what ``collect`` wrote
(``replay_train_collected``); the static-dataset family (CS:GO, Minari, video + actions) maps it to what its
ingest pipeline wrote (``csgo_dataset``, ``static_dataset``), under its namespace::

    pipeline(world_model.create_pipeline(("denoiser", "upsampler")), namespace="csgo",
             inputs={"replay_train": "csgo_dataset"})
"""

from __future__ import annotations

from typing import Any, Sequence

from kedro.pipeline import Pipeline, node

from diamond_kedro.training.run_common import Component, MissingComponent


def train_world_model_component(
    component: Component | MissingComponent, replay_train: Any
) -> tuple[Component | MissingComponent, dict[str, float]]:
    """This epoch's updates of a world-model component on segments of ``replay_train`` (a replay store, or
    an ingested static dataset); returns the trained component (the same object, trained in place) and its
    metrics. A component the run does not have (a static run without upsampler) passes through untrained."""
    if isinstance(component, MissingComponent):
        return component, {}
    return component, component.run.train_component(component, replay_train)


def create_pipeline(components: Sequence[str] = ("denoiser", "rew_end_model"), **kwargs: Any) -> Pipeline:
    return Pipeline(
        [
            node(
                train_world_model_component,
                inputs=[name, "replay_train"],
                outputs=[f"{name}_trained", f"{name}_metrics"],
                name=f"train_{name}",
            )
            for name in components
        ]
    )
