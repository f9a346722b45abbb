"""The Atari epoch's own nodes (``atari_epoch``): collect, train the actor-critic in imagination, evaluate.
The world-model components are trained by the shared ``world_model`` pipeline, the epoch committed by the
shared ``commit_epoch``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from diamond_kedro.training.run_common import Component


def collect(actor_critic: Component, collector_state: Any, replay_train: Any) -> tuple[Any, Any, dict[str, float]]:
    """``actor_critic``'s policy plays the real game from ``collector_state`` (emulators, LSTM state, open
    episodes) and appends this epoch's steps to ``replay_train`` (spec §1.6, §6.1). Returns the grown store,
    the collector's new state and the ``train_dataset`` metrics."""
    metrics = actor_critic.run.collect(actor_critic, collector_state, replay_train)
    return replay_train, collector_state, metrics


def train_actor_critic(
    actor_critic: Component, denoiser: Component, rew_end_model: Component, replay_train: Any
) -> tuple[Component, dict[str, float]]:
    """Imagined rollouts in the world model (``denoiser`` + ``rew_end_model``), started from ``replay_train``
    contexts, train ``actor_critic`` (λ-returns, REINFORCE with a value baseline)."""
    return actor_critic, actor_critic.run.train_actor_critic(actor_critic, denoiser, rew_end_model, replay_train)


def evaluate(
    actor_critic: Component, denoiser: Component, rew_end_model: Component, replay_test: Any
) -> tuple[Any, dict[str, float], list[Path]]:
    """Test games of ``actor_critic`` played into ``replay_test``; the world model's test losses and
    fidelity on them. Returns the refilled test store, ``evaluate_metrics`` and the epoch's media."""
    metrics, media = actor_critic.run.evaluate(actor_critic, denoiser, rew_end_model, replay_test)
    return replay_test, metrics, media
