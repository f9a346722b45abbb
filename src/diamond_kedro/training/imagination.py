"""Resumable rollout loop and actor-critic loss (spec §5.3, §5.4).

The same loop drives data collection in the real env (k = 1 step per call, ε = 0.01) and RL in
imagination (k = 15, ε = 0). The env follows the batched torch API:

    env.num_envs, env.num_actions
    env.reset() -> obs (N, 3, H, W) float in [-1, 1]
    env.step(act (N,) int64) -> obs, rew (N,) float32, end (N,) uint8, trunc (N,) uint8, info

Dead rows (end | trunc) are reset inside ``step``: their returned obs is the new episode's first
frame; ``info["final_observation"]`` (n_dead, 3, H, W) holds their true last frame (dead rows in row
order) and, in imagination only, ``info["burnin_obs"]`` (n_dead, L-1, 3, H, W) the first context
frames of their new episode.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from diamond_kedro.models.actor_critic import ActorCritic, HiddenState
from diamond_kedro.models.blocks import sample_categorical
from diamond_kedro.training.returns import lambda_returns


class TorchVecEnv(Protocol):
    num_envs: int
    num_actions: int

    def reset(self) -> Tensor: ...

    def step(self, act: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, dict[str, Any]]: ...


@dataclass
class Rollout:
    """k steps of num_envs envs; every tensor is (num_envs, k, …).

    ``logits`` and ``values`` carry gradient (truncated BPTT over the chunk); the rest do not.
    ``bootstrap_values[:, t]`` is V of the state after step t: the value computed at step t+1, or for
    rows that died at step t the value of their final observation.
    """

    obs: Tensor  # (N, k, 3, H, W)
    act: Tensor  # (N, k) int64
    rew: Tensor  # (N, k) float32
    end: Tensor  # (N, k) uint8
    trunc: Tensor  # (N, k) uint8
    logits: Tensor  # (N, k, A)
    values: Tensor  # (N, k)
    bootstrap_values: Tensor  # (N, k), detached
    infos: list[dict[str, Any]] = field(default_factory=list)


class RolloutLoop:
    """Owns the env and the actor-critic's recurrent state across calls (spec §5.3).

    The env is reset lazily at the first ``run`` (as the authors' generator does); the LSTM state
    starts at zero and there is no actor-critic burn-in at that very first reset.
    """

    def __init__(
        self,
        env: TorchVecEnv,
        actor_critic: ActorCritic,
        epsilon: float = 0.0,
        rng: random.Random | None = None,
    ) -> None:
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError(f"RolloutLoop: epsilon must be in [0, 1], got {epsilon}")
        self.env = env
        self.actor_critic = actor_critic
        self.epsilon = epsilon
        self.rng = rng if rng is not None else random.Random()
        self.obs: Tensor | None = None
        self.hx_cx: HiddenState | None = None

    def reset(self) -> None:
        """Reset the env and zero the LSTM state (no burn-in)."""
        with torch.no_grad():
            out = self.env.reset()
        self.obs = out[0] if isinstance(out, tuple) else out
        self.hx_cx = self.actor_critic.zero_state(self.env.num_envs, device=self.obs.device)

    def run(self, k: int) -> Rollout:
        if k < 1:
            raise ValueError(f"RolloutLoop.run: k must be >= 1, got {k}")
        if self.obs is None or self.hx_cx is None:
            self.reset()
        model = self.actor_critic
        obs = self.obs
        # Truncated BPTT: gradient flows through the LSTM within this chunk only.
        h, c = (s.detach() for s in self.hx_cx)

        keys = ("obs", "act", "rew", "end", "trunc", "logits", "values")
        steps: dict[str, list[Tensor]] = {key: [] for key in keys}
        infos: list[dict[str, Any]] = []
        final_values: list[tuple[int, Tensor, Tensor]] = []  # (step, dead row indices, V(final obs))

        for t in range(k):
            logits, value, (h, c) = model(obs, (h, c))
            with torch.no_grad():
                act = sample_categorical(logits)  # π(a|s) exactly, with no host sync (unlike multinomial)
                # ε-greedy: one coin flip per step for all envs together (spec §12.15).
                if self.epsilon > 0 and self.rng.random() < self.epsilon:
                    act = torch.randint(0, self.env.num_actions, act.shape, device=act.device)
                next_obs, rew, end, trunc, info = self.env.step(act)
            # Which rows died: the one host read of a step (the number of new contexts depends on it). An env
            # that already read it hands the indices over (``info["dead_rows"]``, the world-model env).
            idx = info.get("dead_rows")
            if idx is None:
                idx = (end.bool() | trunc.bool()).nonzero().squeeze(1)
            idx = idx.to(h.device)
            if idx.numel():
                with torch.no_grad():  # bootstrap from the true last frame, from the state after step t
                    _, v_final, _ = model(info["final_observation"], (h[idx], c[idx]))
                final_values.append((t, idx, v_final))
                if "burnin_obs" in info:
                    # New context: run the LSTM over its first L-1 frames from zero state, with
                    # gradient, so the first decision is taken after seeing all L context frames.
                    h_new, c_new = model.burn_in(info["burnin_obs"])
                    # (dtypes can differ under bf16 autocast)
                    h = h.index_put((idx,), h_new.to(h.dtype))
                    c = c.index_put((idx,), c_new.to(c.dtype))
                else:
                    h, c = h.index_fill(0, idx, 0.0), c.index_fill(0, idx, 0.0)
            for key, val in zip(keys, (obs, act, rew, end, trunc, logits, value)):
                steps[key].append(val)
            infos.append(info)
            obs = next_obs

        with torch.no_grad():  # bootstrap of the last step; the new state is not kept
            _, v_last, _ = model(obs, (h, c))
        bootstrap = torch.stack([v.detach() for v in steps["values"][1:]] + [v_last], dim=1)
        for t, idx, v_final in final_values:
            bootstrap[idx, t] = v_final.to(bootstrap.dtype)

        self.obs, self.hx_cx = obs, (h, c)
        stacked = {key: torch.stack(vals, dim=1) for key, vals in steps.items()}
        return Rollout(bootstrap_values=bootstrap, infos=infos, **stacked)


def actor_critic_loss(
    rollout: Rollout,
    gamma: float = 0.985,
    lambda_: float = 0.95,
    weight_value_loss: float = 1.0,
    weight_entropy_loss: float = 0.001,
) -> tuple[Tensor, dict[str, float]]:
    """REINFORCE with value baseline + value regression + entropy bonus, averaged over (env, step).

        loss_actions = −mean(log π(a_t) · stopgrad(G_t − V_t))
        loss_values  = w_v · mean((V_t − G_t)²)            (no ½)
        loss_entropy = −w_H · mean(H[π_t])
    """
    returns = lambda_returns(
        rollout.rew, rollout.end, rollout.trunc, rollout.bootstrap_values, gamma, lambda_
    )
    values = rollout.values
    logp = F.log_softmax(rollout.logits, dim=-1)
    logp_act = logp.gather(-1, rollout.act.unsqueeze(-1)).squeeze(-1)
    entropy = -(logp.exp() * logp).sum(-1).mean()

    loss_actions = -(logp_act * (returns - values).detach()).mean()
    loss_values = weight_value_loss * F.mse_loss(values, returns)
    loss_entropy = -weight_entropy_loss * entropy
    loss = loss_actions + loss_entropy + loss_values

    # Metrics stay on the device as 0-dim tensors (MetricAccumulator reads them once per phase).
    names = (
        "policy_entropy",
        "loss_actions",
        "loss_entropy",
        "loss_values",
        "loss_total",
        "imagined_return_mean",
        "imagined_reward_mean",
        "imagined_end_rate",
        "value_mean",
    )
    vals = torch.stack(
        [
            entropy.detach() / math.log(2),  # bits
            loss_actions.detach(),
            loss_entropy.detach(),
            loss_values.detach(),
            loss.detach(),
            returns.mean(),
            rollout.rew.float().mean(),
            rollout.end.float().mean(),
            values.detach().mean(),
        ]
    ).float()
    return loss, dict(zip(names, vals.unbind()))
