"""Evaluation during a run (spec §6.3): test episodes in the real env, world-model test losses, pictures.

Every ``evaluate.every`` epochs: ``num_episodes`` full games (no life-loss termination, ε = 0, the
stochastic policy, fresh resets) are collected into the emptied test store; the denoiser and the
reward/end model are scored on them with the deterministic traversal of §1.8; the world model's fidelity
is measured on them (open-loop imagination with the recorded actions from real contexts, PSNR/SSIM per
horizon against a copy-last-frame baseline, reward/end accuracy: ``fidelity/...`` metrics), with curves,
a picture and a video of real vs imagined frames attached as MLflow artifacts (``imagination/``). At the
last epoch, ``num_final_episodes`` games give ``final_return_mean`` / ``final_return_std`` (population std),
the per-seed score the paper reports.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from diamond_kedro.envs.collector import Collector
from diamond_kedro.evaluation.fidelity import choose_contexts, plot_fidelity_curves, world_model_fidelity
from diamond_kedro.evaluation.video import trajectory_grid, write_comparison_video
from diamond_kedro.models.agent import Agent
from diamond_kedro.models.diffusion_sampler import DiffusionSamplerConfig
from diamond_kedro.replay.sampler import iter_test_batches
from diamond_kedro.training.run_common import test_losses


@dataclass
class EvaluationResult:
    """What an evaluation gives back to the run that asked for it (which owns counters and the report)."""

    metrics: dict[str, float] = field(default_factory=dict)
    media: list[Path] = field(default_factory=list)  # pictures and videos, attached under ``imagination/``
    num_test_episodes: int = 0  # test games played into the test store
    final_metrics: dict[str, float] = field(default_factory=dict)  # at the last epoch: final_return_mean/std


def play_test_episodes(
    make_env: Callable[[int], Any], policy: torch.nn.Module, num_episodes: int, rng: np.random.Generator, store=None
) -> tuple[list[float], list[int]]:
    """Returns and lengths of ``num_episodes`` full test games of ``policy`` (optionally stored) in a test env
    ``make_env(seed)``; the env's and the collector's seeds are drawn from ``rng``."""
    env = make_env(int(rng.integers(2**31)))
    try:
        collector = Collector(env, store=store, policy=policy, epsilon=0.0, train=False, seed=int(rng.integers(2**31)))
        policy.eval()
        stats = collector.collect(num_episodes=num_episodes)
    finally:
        env.close()
    return stats.episode_returns, stats.episode_lengths


def fidelity_and_media(
    cfg: Any,
    agent: Agent,
    store,
    sampler: DiffusionSamplerConfig,
    *,
    context_length: int,
    rng: np.random.Generator,
    media_stem: Path,
    title: str,
) -> tuple[dict[str, float], list[Path]]:
    """World-model fidelity on the test episodes (``evaluation/fidelity.py``) and its pictures, named
    ``<media_stem>_*``: PSNR/SSIM curves against the horizon (PNG), the curves and confusion matrices (JSON),
    a grid of real frames above imagined ones (PNG) and a side-by-side video (real | imagined |
    difference) of the first context, ``video_horizon`` frames at most (no longer than the longest
    fidelity horizon). With ``fidelity_num_contexts: 0`` only the grid and video are made (one context
    imagined ``video_horizon`` steps) and no metric is returned. ``cfg``: the ``evaluate`` section."""
    L = context_length
    if cfg.fidelity_num_contexts > 0:
        horizons, num_contexts = cfg.fidelity_horizons, cfg.fidelity_num_contexts
    else:
        horizons, num_contexts = [cfg.video_horizon], 1
    if not choose_contexts(store, L, max(horizons), 1):
        return {}, []  # no test episode longer than the context
    result = world_model_fidelity(
        agent.denoiser,
        agent.rew_end_model,
        store,
        sampler,
        horizons=horizons,
        num_contexts=num_contexts,
        batch_size=cfg.test_batch_size,
        seed=int(rng.integers(2**31)),
    )
    stem = media_stem
    real, imagined = result.video_real[: cfg.video_horizon], result.video_imagined[: cfg.video_horizon]
    paths = [
        trajectory_grid(real, imagined, f"{stem}_real_vs_imagined.png"),
        write_comparison_video(real, imagined, f"{stem}_real_vs_imagined.gif"),
    ]
    if cfg.fidelity_num_contexts == 0:
        return {}, paths
    title = f"{title} ({len(result.contexts)} contexts)"
    paths += [plot_fidelity_curves(result, f"{stem}_fidelity.png", title), result.write_json(f"{stem}_fidelity.json")]
    return result.metrics, paths


def evaluate_agent(
    cfg: Any,
    agent: Agent,
    test_store,
    *,
    make_test_env: Callable[[int], Any],
    rng: np.random.Generator,
    seq_len: Callable[[str], int],
    device: torch.device,
    sampler: DiffusionSamplerConfig,
    context_length: int,
    media_stem: Path,
    title: str,
    is_last_epoch: bool,
) -> EvaluationResult:
    """One evaluation (module docstring) of ``agent`` with the ``evaluate`` section ``cfg``: the test store is
    emptied and refilled, seeds are drawn from ``rng`` (test games, then fidelity, then final games),
    ``seq_len(component)`` is each world-model component's training segment length, ``media_stem`` the path
    prefix of the pictures, ``title`` the fidelity plot's. Returns the metrics and media; the caller counts
    and reports them."""
    out = EvaluationResult()
    test_store.clear()
    if cfg.num_episodes > 0:
        returns, lengths = play_test_episodes(make_test_env, agent.actor_critic, cfg.num_episodes, rng, store=test_store)
        out.num_test_episodes = len(returns)
        out.metrics.update(
            {
                "test_dataset/return_mean": float(np.mean(returns)),
                "test_dataset/return_std": float(np.std(returns)),
                "test_dataset/length_mean": float(np.mean(lengths)),
                "test_dataset/num_episodes": float(len(returns)),
            }
        )
        for name in ("denoiser", "rew_end_model"):
            batches = iter_test_batches(test_store, cfg.test_batch_size, seq_len(name), device=device)
            losses, num_batches = test_losses(getattr(agent, name), batches)
            out.metrics.update({f"{name}/test/{k}": v for k, v in losses.items()})
            out.metrics[f"{name}/test/num_batch_test_{name}"] = num_batches
        fidelity, out.media = fidelity_and_media(
            cfg, agent, test_store, sampler, context_length=context_length, rng=rng, media_stem=media_stem, title=title
        )
        out.metrics.update(fidelity)
    if is_last_epoch and cfg.num_final_episodes > 0:
        returns, _ = play_test_episodes(make_test_env, agent.actor_critic, cfg.num_final_episodes, rng)
        out.final_metrics = {"final_return_mean": float(np.mean(returns)), "final_return_std": float(np.std(returns))}
        out.metrics.update(out.final_metrics)
    return out
