"""RL in imagination against a known optimum: the actor-critic trained inside scripted Catch.

:class:`~diamond_kedro.envs.scripted.ScriptedCatchWorldModelEnv` replaces the denoiser and the reward/end
model by the rules of Catch, so everything else is the real thing: :class:`RolloutLoop` (burn-in of new
contexts, bootstrap from final frames, truncated BPTT), :func:`lambda_returns`, :func:`actor_critic_loss`,
AdamW with linear warm-up and gradient clipping (:mod:`diamond_kedro.training.optim`). The learned policy is
then played in the real game (``diamond_kedro/Catch-v0`` through the env factory and the evaluation
:class:`Collector`: full games, ε = 0, stochastic policy) and its return compared with the optimum
(``num_balls``) and with a ball-blind policy (``num_balls / columns``, exact).

``broken`` makes the loss deliberately wrong, so that the check is seen to fail when the RL side is wrong:

* ``flip-advantage``: the policy-gradient term with the advantage's sign flipped (the policy is pushed
  *away* from actions that did better than expected);
* ``lambda-index``: the λ-return targets shifted by one step (``G_{t+1}`` used as the target of step t,
  an off-by-one in the return index); the value loss uses the same wrong targets.

Used by ``benchmarks/bench_learning_rl.py`` (figures) and ``tests/training/test_learning_rl.py`` (a guard).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from diamond_kedro.envs.atari import make_atari_env
from diamond_kedro.envs.collector import Collector
from diamond_kedro.envs.scripted import ScriptedCatchWorldModelEnv
from diamond_kedro.models.actor_critic import ActorCritic, ActorCriticConfig
from diamond_kedro.training.imagination import Rollout, RolloutLoop, actor_critic_loss
from diamond_kedro.training.optim import make_optimizer, make_warmup_scheduler, optimizer_step
from diamond_kedro.training.returns import lambda_returns

BROKEN_VARIANTS = ("flip-advantage", "lambda-index")
# CatchEnv's defaults, which the factory builds for "Catch"
NUM_BALLS = 10
COLUMNS = 4
DROP_STEPS = 4


@dataclass
class CheckConfig:
    updates: int = 300
    num_envs: int = 32  # imagined envs per update (paper: 32)
    horizon: int = 15  # imagination horizon H (paper: 15); also the chunk per update (backup_every)
    context_length: int = 4  # L, as the denoiser's conditioning frames
    gamma: float = 0.985
    lambda_: float = 0.95
    weight_value_loss: float = 1.0
    weight_entropy_loss: float = 0.001
    lr: float = 1e-3
    warmup_steps: int = 20
    max_grad_norm: float = 100.0
    channels: tuple[int, ...] = (16, 16, 32, 32)
    down: tuple[int, ...] = (1, 1, 0, 0)
    lstm_dim: int = 64
    size: int = 16
    eval_every: int = 50
    eval_episodes: int = 20
    seed: int = 0
    broken: str | None = None
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.broken is not None and self.broken not in BROKEN_VARIANTS:
            raise ValueError(f"broken must be one of {', '.join(BROKEN_VARIANTS)} (or None), got {self.broken!r}")
        for name in ("updates", "num_envs", "horizon", "context_length", "eval_episodes", "size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.eval_every < 0:
            raise ValueError(f"eval_every must be >= 0 (0 = only at the end), got {self.eval_every}")


@dataclass
class CheckResult:
    config: CheckConfig
    # one row per evaluation: update, imagined return per step (mean over the last updates), real-game returns
    evaluations: list[dict] = field(default_factory=list)
    imagined_reward_per_step: list[float] = field(default_factory=list)  # one per update
    seconds: float = 0.0

    @property
    def final_return_mean(self) -> float:
        return float(np.mean(self.evaluations[-1]["returns"]))


def loss_for(rollout: Rollout, cfg: CheckConfig) -> tuple[torch.Tensor, dict[str, float]]:
    """The library's loss, or the deliberately broken one (see the module docstring)."""
    kw = dict(gamma=cfg.gamma, lambda_=cfg.lambda_, weight_value_loss=cfg.weight_value_loss, weight_entropy_loss=cfg.weight_entropy_loss)
    loss, metrics = actor_critic_loss(rollout, **kw)
    if cfg.broken is None:
        return loss, metrics
    returns = lambda_returns(rollout.rew, rollout.end, rollout.trunc, rollout.bootstrap_values, cfg.gamma, cfg.lambda_)
    logp = F.log_softmax(rollout.logits, dim=-1)
    logp_act = logp.gather(-1, rollout.act.unsqueeze(-1)).squeeze(-1)
    good_actions = -(logp_act * (returns - rollout.values).detach()).mean()
    good_values = cfg.weight_value_loss * F.mse_loss(rollout.values, returns)
    if cfg.broken == "flip-advantage":
        return loss - 2 * good_actions, metrics
    # lambda-index: target of step t is G_{t+1} (the last step keeps its own)
    shifted = torch.cat((returns[:, 1:], returns[:, -1:]), dim=1)
    bad_actions = -(logp_act * (shifted - rollout.values).detach()).mean()
    bad_values = cfg.weight_value_loss * F.mse_loss(rollout.values, shifted)
    return loss - good_actions - good_values + bad_actions + bad_values, metrics


def evaluate_in_catch(actor_critic: ActorCritic | None, episodes: int, seed: int, size: int = 16) -> list[float]:
    """Returns of ``episodes`` full games of the real Catch (the run's evaluation path: ε = 0, stochastic
    policy, LSTM reset per game). ``actor_critic=None`` plays uniformly at random."""
    env = make_atari_env("Catch", num_envs=1, done_on_life_loss=False, seed=seed, screen_size=size)
    try:
        if actor_critic is not None:
            actor_critic.eval()
        collector = Collector(env, store=None, policy=actor_critic, epsilon=0.0, train=False, seed=seed)
        returns = collector.collect(num_episodes=episodes).episode_returns
    finally:
        env.close()
        if actor_critic is not None:
            actor_critic.train()
    return [float(r) for r in returns[:episodes]]


def make_actor_critic(cfg: CheckConfig) -> ActorCritic:
    """The check's actor-critic, seeded with ``cfg.seed`` (so a second code can start from the same weights)."""
    torch.manual_seed(cfg.seed)
    return ActorCritic(
        ActorCriticConfig(num_actions=3, channels=tuple(cfg.channels), down=tuple(cfg.down), lstm_dim=cfg.lstm_dim, img_size=cfg.size)
    ).to(torch.device(cfg.device))


def make_scripted_env(cfg: CheckConfig) -> ScriptedCatchWorldModelEnv:
    return ScriptedCatchWorldModelEnv(
        num_envs=cfg.num_envs,
        horizon=cfg.horizon,
        size=cfg.size,
        columns=COLUMNS,
        drop_steps=DROP_STEPS,
        context_length=cfg.context_length,
        device=torch.device(cfg.device),
        seed=cfg.seed,
    )


def run_check(
    cfg: CheckConfig,
    model: torch.nn.Module,
    update_loss: Callable[[], tuple[torch.Tensor, dict[str, float]]],
    policy: Callable[[], ActorCritic],
    progress: Callable[[dict], None] | None = None,
    on_update: Callable[[dict], None] | None = None,
) -> CheckResult:
    """The check's training loop: ``cfg.updates`` optimiser steps on ``update_loss()`` (which rolls out and
    returns the loss and a metrics dict with ``imagined_reward_mean``), AdamW with warm-up and clipping, and
    real-game evaluations of ``policy()`` every ``cfg.eval_every`` updates."""
    opt = make_optimizer(model, lr=cfg.lr, weight_decay=0.0, eps=1e-8)
    sched = make_warmup_scheduler(opt, cfg.warmup_steps)
    result = CheckResult(cfg)
    t0 = time.perf_counter()

    def evaluate(update: int) -> None:
        returns = evaluate_in_catch(policy(), cfg.eval_episodes, seed=cfg.seed * 1000 + update, size=cfg.size)
        recent = result.imagined_reward_per_step[-max(1, cfg.eval_every) :] or [float("nan")]
        row = {
            "update": update,
            "imagined_reward_per_step": float(np.mean(recent)),
            "returns": returns,
            "return_mean": float(np.mean(returns)),
            "seconds": time.perf_counter() - t0,
        }
        result.evaluations.append(row)
        if progress is not None:
            progress(row)

    evaluate(0)
    for u in range(1, cfg.updates + 1):
        loss, metrics = update_loss()
        optimizer_step(model, opt, sched, loss, cfg.max_grad_norm)
        result.imagined_reward_per_step.append(float(metrics["imagined_reward_mean"]))
        if on_update is not None:
            on_update({"update": u, "loss_total": float(loss.detach()), **metrics})
        if (cfg.eval_every and u % cfg.eval_every == 0) or u == cfg.updates:
            if not result.evaluations or result.evaluations[-1]["update"] != u:
                evaluate(u)
    result.seconds = time.perf_counter() - t0
    return result


def train_in_scripted_catch(
    cfg: CheckConfig,
    progress: Callable[[dict], None] | None = None,
    on_update: Callable[[dict], None] | None = None,
) -> CheckResult:
    ac = make_actor_critic(cfg)
    loop = RolloutLoop(make_scripted_env(cfg), ac, epsilon=0.0)
    return run_check(cfg, ac, lambda: loss_for(loop.run(cfg.horizon), cfg), lambda: ac, progress, on_update)
