"""Evaluation during a run (spec §6.3): test episodes in the real env, world-model test losses, pictures.

Every ``evaluate.every`` epochs: ``num_episodes`` full games (no life-loss termination, ε = 0, the
stochastic policy, fresh resets) are collected into the emptied test store; the denoiser and the
reward/end model are scored on them with the deterministic traversal of §1.8; a picture of real vs
imagined frames (the world model driven by the recorded actions from a real context) is attached. At the
last epoch, ``num_final_episodes`` games give ``final_return_mean`` / ``final_return_std`` (population std),
the per-seed score the paper reports.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from diamond_kedro.envs.atari import make_atari_env
from diamond_kedro.envs.collector import Collector
from diamond_kedro.evaluation.video import trajectory_grid, write_comparison_video
from diamond_kedro.models.diffusion_sampler import DiffusionSampler
from diamond_kedro.replay.sampler import iter_test_batches

if TYPE_CHECKING:
    from diamond_kedro.training.run import AtariRun


def play_test_episodes(run: "AtariRun", num_episodes: int, store=None) -> list[float]:
    """Returns of ``num_episodes`` full test games with the current policy (optionally stored)."""
    cfg = run.cfg
    env = make_atari_env(
        cfg.env.game,
        num_envs=1,
        done_on_life_loss=False,
        seed=int(run.rng.integers(2**31)),
        device=run.device,
        noop_max=cfg.env.noop_max,
        frame_skip=cfg.env.frame_skip,
        screen_size=cfg.env.size,
        max_num_frames_per_episode=cfg.env.max_num_frames_per_episode,
    )
    try:
        collector = Collector(
            env, store=store, policy=run.agent.actor_critic, epsilon=0.0, train=False, seed=int(run.rng.integers(2**31))
        )
        run.agent.actor_critic.eval()
        stats = collector.collect(num_episodes=num_episodes)
    finally:
        env.close()
    return stats.episode_returns, stats.episode_lengths


@torch.no_grad()
def test_losses(model: torch.nn.Module, store, batch_size: int, seq_len: int, device: torch.device) -> tuple[dict[str, float], int]:
    """Mean loss of ``model`` over the test store, traversed deterministically (spec §1.8)."""
    from diamond_kedro.training.run import MetricAccumulator

    model.eval()
    acc = MetricAccumulator()
    for batch in iter_test_batches(store, batch_size, seq_len, device=device):
        _, metrics = model.compute_loss(batch)
        acc.add(metrics)
    model.train()
    return acc.result(), acc.count


@torch.no_grad()
def imagine_with_recorded_actions(
    sampler: DiffusionSampler, obs: torch.Tensor, act: torch.Tensor, num_conditioning: int, horizon: int
) -> torch.Tensor:
    """Open-loop imagination: from the real frames ``obs[:L]``, generate ``obs[L:L+horizon]`` with the
    recorded actions. ``obs`` (T,3,H,W) in [-1,1], ``act`` (T,). Returns (horizon,3,H,W)."""
    L = num_conditioning
    frames = obs[:L].clone()
    actions = act[: L + horizon]
    out = []
    for t in range(horizon):
        prev_obs = frames[-L:].unsqueeze(0)
        prev_act = actions[t : t + L].unsqueeze(0)
        nxt, _ = sampler.sample(prev_obs, prev_act)
        out.append(nxt[0])
        frames = torch.cat([frames, nxt], dim=0)
    return torch.stack(out)


def imagined_vs_real_media(run: "AtariRun", store, horizon: int) -> list[Path]:
    """A PNG grid (real frames above frames imagined with the same actions) and a side-by-side video
    (real | imagined | difference) of the first long-enough test episode, under ``<run>/media``."""
    from diamond_kedro.training.run import sampler_config

    L = run.cfg.denoiser.model.num_steps_conditioning
    lengths = store.lengths
    candidates = [i for i, n in enumerate(lengths) if n >= L + 2]
    if not candidates:
        return []
    episode = store.load_episode(candidates[0])
    h = min(horizon, int(lengths[candidates[0]]) - L)
    obs_u8 = torch.as_tensor(np.asarray(episode.obs[: L + h]))
    obs = obs_u8.to(run.device).permute(0, 3, 1, 2).float().div(127.5).sub(1)
    act = torch.as_tensor(np.asarray(episode.act[: L + h]), device=run.device)
    run.agent.denoiser.eval()
    imagined = imagine_with_recorded_actions(DiffusionSampler(run.agent.denoiser, sampler_config(run.cfg)), obs, act, L, h)
    run.agent.denoiser.train()
    real_u8 = obs_u8[L:].numpy()
    imagined_u8 = imagined.add(1).mul(127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    stem = run.paths.media / f"epoch_{run.epoch:05d}_real_vs_imagined"
    return [
        trajectory_grid(real_u8, imagined_u8, stem.with_suffix(".png")),
        write_comparison_video(real_u8, imagined_u8, stem.with_suffix(".gif")),
    ]


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
        d = run.cfg.denoiser.model
        den, n_den = test_losses(
            run.agent.denoiser, run.replay_test, cfg.test_batch_size, d.num_steps_conditioning + 1 + d.num_autoregressive_steps, run.device
        )
        metrics.update({f"denoiser/test/{k}": v for k, v in den.items()})
        metrics["denoiser/test/num_batch_test_denoiser"] = n_den
        rew, n_rew = test_losses(
            run.agent.rew_end_model, run.replay_test, cfg.test_batch_size, run.cfg.rew_end_model.training.seq_length, run.device
        )
        metrics.update({f"rew_end_model/test/{k}": v for k, v in rew.items()})
        metrics["rew_end_model/test/num_batch_test_rew_end_model"] = n_rew
        for path in imagined_vs_real_media(run, run.replay_test, cfg.video_horizon):
            report.artifacts.append(("imagination", path))
    if run.is_last_epoch and cfg.num_final_episodes > 0:
        returns, _ = play_test_episodes(run, cfg.num_final_episodes)
        final = {"final_return_mean": float(np.mean(returns)), "final_return_std": float(np.std(returns))}
        run.counters.final_metrics = final
        metrics.update(final)
    report.metrics.update(metrics)
    return metrics
