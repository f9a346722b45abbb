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

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from diamond_kedro.envs.collector import Collector
from diamond_kedro.evaluation.fidelity import choose_contexts, plot_fidelity_curves, world_model_fidelity
from diamond_kedro.evaluation.video import trajectory_grid, write_comparison_video
from diamond_kedro.replay.sampler import iter_test_batches
from diamond_kedro.training.run_common import test_losses

if TYPE_CHECKING:
    from diamond_kedro.training.run import AtariRun


def play_test_episodes(run: "AtariRun", num_episodes: int, store=None) -> tuple[list[float], list[int]]:
    """Returns and lengths of ``num_episodes`` full test games with the current policy (optionally stored)."""
    env = run.make_env(num_envs=1, done_on_life_loss=False, seed=int(run.rng.integers(2**31)))
    try:
        collector = Collector(
            env, store=store, policy=run.agent.actor_critic, epsilon=0.0, train=False, seed=int(run.rng.integers(2**31))
        )
        run.agent.actor_critic.eval()
        stats = collector.collect(num_episodes=num_episodes)
    finally:
        env.close()
    return stats.episode_returns, stats.episode_lengths


def fidelity_and_media(run: "AtariRun", store) -> tuple[dict[str, float], list[Path]]:
    """World-model fidelity on the test episodes (``evaluation/fidelity.py``) and its pictures, under
    ``<run>/media``: PSNR/SSIM curves against the horizon (PNG), the curves and confusion matrices (JSON),
    a grid of real frames above imagined ones (PNG) and a side-by-side video (real | imagined |
    difference) of the first context, ``video_horizon`` frames at most (no longer than the longest
    fidelity horizon). With ``fidelity_num_contexts: 0`` only the grid and video are made (one context
    imagined ``video_horizon`` steps) and no metric is returned."""
    from diamond_kedro.training.run import sampler_config

    cfg = run.cfg.evaluate
    L = run.cfg.denoiser.model.num_steps_conditioning
    if cfg.fidelity_num_contexts > 0:
        horizons, num_contexts = cfg.fidelity_horizons, cfg.fidelity_num_contexts
    else:
        horizons, num_contexts = [cfg.video_horizon], 1
    if not choose_contexts(store, L, max(horizons), 1):
        return {}, []  # no test episode longer than the context
    result = world_model_fidelity(
        run.agent.denoiser,
        run.agent.rew_end_model,
        store,
        sampler_config(run.cfg),
        horizons=horizons,
        num_contexts=num_contexts,
        batch_size=cfg.test_batch_size,
        seed=int(run.rng.integers(2**31)),
    )
    stem = run.paths.media / f"epoch_{run.epoch:05d}"
    real, imagined = result.video_real[: cfg.video_horizon], result.video_imagined[: cfg.video_horizon]
    paths = [
        trajectory_grid(real, imagined, f"{stem}_real_vs_imagined.png"),
        write_comparison_video(real, imagined, f"{stem}_real_vs_imagined.gif"),
    ]
    if cfg.fidelity_num_contexts == 0:
        return {}, paths
    title = f"{run.cfg.env.game}, epoch {run.epoch}: open-loop imagination vs real ({len(result.contexts)} contexts)"
    paths += [plot_fidelity_curves(result, f"{stem}_fidelity.png", title), result.write_json(f"{stem}_fidelity.json")]
    return result.metrics, paths


def evaluate_run(run: "AtariRun") -> dict[str, float]:
    cfg, report = run.cfg.evaluate, run._report()
    metrics: dict[str, float] = {}
    run.replay_test.clear()
    if cfg.num_episodes > 0:
        returns, lengths = play_test_episodes(run, cfg.num_episodes, store=run.replay_test)
        run.counters.num_test_episodes += len(returns)
        metrics.update(
            {
                "test_dataset/return_mean": float(np.mean(returns)),
                "test_dataset/return_std": float(np.std(returns)),
                "test_dataset/length_mean": float(np.mean(lengths)),
                "test_dataset/num_episodes": float(len(returns)),
            }
        )
        for name in ("denoiser", "rew_end_model"):
            batches = iter_test_batches(run.replay_test, cfg.test_batch_size, run.seq_len(name), device=run.device)
            losses, num_batches = test_losses(getattr(run.agent, name), batches)
            metrics.update({f"{name}/test/{k}": v for k, v in losses.items()})
            metrics[f"{name}/test/num_batch_test_{name}"] = num_batches
        fidelity, media = fidelity_and_media(run, run.replay_test)
        metrics.update(fidelity)
        for path in media:
            report.artifacts.append(("imagination", path))
    if run.is_last_epoch and cfg.num_final_episodes > 0:
        returns, _ = play_test_episodes(run, cfg.num_final_episodes)
        final = {"final_return_mean": float(np.mean(returns)), "final_return_std": float(np.std(returns))}
        run.counters.final_metrics = final
        metrics.update(final)
    report.metrics.update(metrics)
    return metrics
