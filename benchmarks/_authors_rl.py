"""The AUTHORS' actor-critic trained in scripted Catch, for ``bench_learning_rl.py --authors DIR``.

DIR is an export of eloialonso/diamond (branch main) kept OUTSIDE this project; its ``src/`` is put on
sys.path at run time, to measure it. What runs from it: their ``ActorCritic`` (encoder, LSTM cell, heads),
their ``make_env_loop`` coroutine (LSTM resets and burn-in of new contexts, bootstraps from final frames,
truncated BPTT over the chunk) and their ``ActorCritic.forward`` loss with ``compute_lambda_returns``.
What is shared with our run, so that only the RL code differs: the scripted env (same seed), the initial
weights (ours, loaded into theirs: the state-dict keys are the same), the optimiser, warm-up and clipping
(``run_check``), and the evaluation in the real game (their weights loaded back into our module, which
computes the same function).

One thing of theirs is aligned with ours: the action draw. Their loop samples with
``Categorical(logits).sample()`` (``torch.multinomial``), ours with an exponential race (Gumbel-max,
``models.blocks.sample_categorical``: the same distribution without a host sync); the two consume the random
stream differently, so the trajectories would differ from the first step. Here their loop's ``Categorical`` draws as ours does;
their loss keeps its own ``Categorical`` for log-probabilities and entropy.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable

import torch

from _learning import import_authors
from diamond_kedro.models.blocks import sample_categorical
from diamond_kedro.training.scripted_check import CheckConfig, CheckResult, make_actor_critic, make_scripted_env, run_check


class _Draw:
    """Stand-in for ``Categorical`` in their env loop: ``.sample()`` draws as our ``RolloutLoop`` does."""

    def __init__(self, logits: torch.Tensor) -> None:
        self.logits = logits

    def sample(self) -> torch.Tensor:
        return sample_categorical(self.logits)


class _EnvAdapter:
    """Our scripted env behind their env's ``reset(seed=...) -> (obs, info)``; records rewards per step."""

    def __init__(self, env: Any) -> None:
        self.env, self.num_envs, self.num_actions = env, env.num_envs, env.num_actions
        self.rewards: list[torch.Tensor] = []

    def reset(self, seed: Any = None) -> tuple[torch.Tensor, dict]:
        return self.env.reset(), {}

    def step(self, act: torch.Tensor):
        out = self.env.step(act)
        self.rewards.append(out[1].float().mean())
        return out


def train_authors_in_scripted_catch(
    cfg: CheckConfig,
    authors: Path,
    progress: Callable[[dict], None] | None = None,
    losses: list[float] | None = None,
) -> CheckResult:
    if cfg.broken is not None:
        raise SystemExit("--authors runs their loss as it is; it has no --broken variants")
    import_authors(authors)
    import coroutines.env_loop as their_env_loop  # noqa: E402  (their module, from DIR/src)
    from models.actor_critic import ActorCritic as TheirActorCritic, ActorCriticConfig as TheirConfig, ActorCriticLossConfig

    their_env_loop.Categorical = _Draw
    theirs = TheirActorCritic(TheirConfig(lstm_dim=cfg.lstm_dim, img_channels=3, img_size=cfg.size,
                                          channels=list(cfg.channels), down=list(cfg.down), num_actions=3))
    ours = make_actor_critic(cfg)  # seeds the global stream exactly as our run does, then lends its weights
    theirs.load_state_dict(ours.state_dict())
    theirs.to(torch.device(cfg.device))
    env = _EnvAdapter(make_scripted_env(cfg))
    theirs.setup_training(env, ActorCriticLossConfig(backup_every=cfg.horizon, gamma=cfg.gamma, lambda_=cfg.lambda_,
                                                     weight_value_loss=cfg.weight_value_loss,
                                                     weight_entropy_loss=cfg.weight_entropy_loss))

    def update_loss() -> tuple[torch.Tensor, dict[str, float]]:
        env.rewards.clear()
        loss, metrics = theirs()
        if losses is not None:
            losses.append(float(loss.detach()))
        return loss, {"imagined_reward_mean": float(torch.stack(env.rewards).mean())}

    def policy():
        ours.load_state_dict(theirs.state_dict())
        return ours

    return run_check(cfg, theirs, update_loss, policy, progress)


if __name__ == "__main__":
    sys.exit("run bench_learning_rl.py --authors DIR")
