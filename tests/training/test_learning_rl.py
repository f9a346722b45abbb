"""RL in imagination learns Catch, and a deliberately broken loss does not (a guard for the RL side).

The actor-critic is trained with the real ``RolloutLoop`` / ``actor_critic_loss`` inside the scripted Catch
world-model env, then plays real Catch games. A ball-blind policy's return is exactly Binomial(10, 1/4)
(mean 2.5, sd 1.37), so the mean of 20 games has sd 0.31: the thresholds below are many sd away from
what any seed of a ball-blind policy reaches.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diamond_kedro.envs.catch import random_policy_return_pmf
from diamond_kedro.training.scripted_check import CheckConfig, train_in_scripted_catch

torch.set_num_threads(1)

# Small and fast (150 updates of a tiny actor-critic per variant); gamma 0.5 as in bench_learning_rl.py, whose
# runs showed 150 such updates reach 8.8 of 10 while the flipped advantage scores 0.05 (it avoids the ball).
FAST = dict(updates=150, num_envs=32, horizon=15, gamma=0.5, lambda_=0.95, lr=1e-3, channels=(8, 8, 16, 16),
            lstm_dim=32, eval_every=0, eval_episodes=20)
GAMES = 20
RANDOM_MEAN = 2.5
RANDOM_SD_OF_MEAN = float(np.sqrt(10 * 0.25 * 0.75 / GAMES))  # 0.31


def test_random_level_is_what_the_thresholds_assume():
    pmf = random_policy_return_pmf(4, 10)
    assert (np.arange(11) * pmf).sum() == pytest.approx(RANDOM_MEAN)


def test_actor_critic_learns_catch_in_scripted_imagination():
    result = train_in_scripted_catch(CheckConfig(seed=0, **FAST))
    learned = result.final_return_mean
    # >= 2.5 + 1.5 = 4.0: about 5 sd of a ball-blind policy's 20-game mean above its mean
    assert learned >= RANDOM_MEAN + 1.5, f"learned policy scored {learned:.2f} (random 2.5, optimum 10)"
    # and the imagined reward per step rose from the ball-blind 1/16
    first, last = np.mean(result.imagined_reward_per_step[:20]), np.mean(result.imagined_reward_per_step[-20:])
    assert last > first + 0.03, (first, last)


def test_flipped_advantage_does_not_learn():
    result = train_in_scripted_catch(CheckConfig(seed=0, broken="flip-advantage", **FAST))
    # a flipped policy gradient learns to *avoid* the ball: at best ball-blind, within ~3 sd of 2.5
    assert result.final_return_mean <= RANDOM_MEAN + 3 * RANDOM_SD_OF_MEAN, result.final_return_mean


def test_unknown_broken_variant_is_refused():
    with pytest.raises(ValueError, match="broken must be one of"):
        CheckConfig(broken="flip-sign")
