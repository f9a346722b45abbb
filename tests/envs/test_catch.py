"""Catch (our own small game) and its scripted world-model env: rules, pixels, factory, resuming."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from diamond_kedro.envs.atari import ATARI_100K_GAMES, game_short_name, make_atari_env, resolve_game
from diamond_kedro.envs.catch import CATCH_ENV_ID, CatchEnv, random_policy_return_pmf
from diamond_kedro.envs.collector import Collector
from diamond_kedro.envs.scripted import ScriptedCatchWorldModelEnv

torch.set_num_threads(1)
NOOP, LEFT, RIGHT = 0, 1, 2
BALL = (255, 64, 64)
PADDLE = (64, 224, 255)


def _env(**kw) -> CatchEnv:
    env = CatchEnv(**kw)
    env.reset(seed=0)
    return env


def _put(env: CatchEnv, paddle: int, ball_row: int, ball_col: int) -> None:
    state = env.emulator_state
    state.update(paddle=paddle, ball_row=ball_row, ball_col=ball_col)
    env.emulator_state = state


# -- names --------------------------------------------------------------------------------------


def test_catch_resolves_by_name_and_id_and_is_registered():
    for name in ("Catch", "catch", " Catch ", "diamond_kedro/Catch-v0"):
        assert resolve_game(name) == CATCH_ENV_ID
    assert game_short_name("catch") == "Catch"
    assert game_short_name("BreakoutNoFrameskip-v4") == "Breakout"
    assert CATCH_ENV_ID in gym.registry
    assert isinstance(gym.make(CATCH_ENV_ID).unwrapped, CatchEnv)


def test_unknown_game_lists_atari_games_and_catch():
    with pytest.raises(ValueError) as exc:
        resolve_game("Tetris")
    msg = str(exc.value)
    assert "Tetris" in msg and "Catch" in msg
    assert all(game in msg for game in ATARI_100K_GAMES)


# -- rules (hand-worked games) ------------------------------------------------------------------


def test_a_reached_ball_scores_one_a_missed_ball_zero_and_the_next_ball_spawns_at_once():
    env = _env()
    _put(env, paddle=0, ball_row=0, ball_col=2)
    # RIGHT, RIGHT, NOOP, NOOP: paddle 1, 2, 2, 2; the ball lands on the 4th step (drop_steps = 4)
    rewards = [env.step(a)[1] for a in (RIGHT, RIGHT, NOOP, NOOP)]
    assert rewards == [0.0, 0.0, 0.0, 1.0]
    assert env.paddle == 2 and env.ball_row == 0 and env.balls_done == 1
    _put(env, paddle=0, ball_row=0, ball_col=3)
    rewards = [env.step(a)[1] for a in (LEFT, RIGHT, RIGHT, NOOP)]  # LEFT at the wall is a no-op
    assert rewards == [0.0, 0.0, 0.0, 0.0] and env.paddle == 2 and env.balls_done == 2


def test_game_over_after_num_balls_and_truncation_at_max_steps():
    env = _env(num_balls=3)
    steps = 0
    while True:
        _, _, terminated, truncated, info = env.step(NOOP)
        steps += 1
        assert info["lives"] == 0 and info["life_loss"] is False
        if terminated or truncated:
            break
    assert terminated and not truncated and steps == 3 * 4
    with pytest.raises(RuntimeError, match="reset"):
        env.step(NOOP)
    env = _env(max_steps=5)
    flags = [env.step(NOOP)[2:4] for _ in range(5)]
    assert flags[-1] == (False, True) and all(f == (False, False) for f in flags[:-1])


def test_pixels_of_a_known_state():
    env = _env()  # 16x16, 5 grid rows (pixel rows 0-3, 4-6, 7-9, 10-12, 13-15), 4 columns of 4 pixels
    _put(env, paddle=1, ball_row=2, ball_col=3)
    frame = env.render()
    expected = np.zeros((16, 16, 3), dtype=np.uint8)
    expected[7:10, 12:16] = BALL
    expected[13:16, 4:8] = PADDLE
    np.testing.assert_array_equal(frame, expected)
    assert CatchEnv(size=20).reset(seed=0)[0].shape == (20, 20, 3)


def test_bad_arguments_and_actions_fail_clearly():
    with pytest.raises(ValueError, match="drop_steps"):
        CatchEnv(columns=5, drop_steps=3)
    with pytest.raises(ValueError, match="size"):
        CatchEnv(size=0)
    env = _env()
    with pytest.raises(ValueError, match="action"):
        env.step(3)
    with pytest.raises(ValueError, match="Catch game state"):
        env.emulator_state = {"ale_state": b""}


def test_random_policy_return_is_binomial_n_over_columns():
    pmf = random_policy_return_pmf(columns=4, num_balls=10)
    assert pmf.sum() == pytest.approx(1.0)
    assert pmf[0] == pytest.approx(0.75**10)
    assert (np.arange(11) * pmf).sum() == pytest.approx(2.5)
    # empirical check of the claim "each ball is caught with probability 1/columns" for a random policy
    env, rng, returns = CatchEnv(), np.random.default_rng(0), []
    for ep in range(400):
        env.reset(seed=ep)
        total, done = 0.0, False
        while not done:
            _, r, term, trunc, _ = env.step(int(rng.integers(3)))
            total, done = total + r, term or trunc
        returns.append(total)
    # mean of 400 Binomial(10, 1/4): sd 1.37/sqrt(400) = 0.069, so +-0.3 is > 4 sd
    assert abs(np.mean(returns) - 2.5) < 0.3


# -- through the factory, as the collector and evaluation use it ----------------------------------


def test_factory_env_shapes_info_and_autoreset():
    env = make_atari_env("Catch", num_envs=1, done_on_life_loss=True, seed=0, screen_size=16)
    try:
        obs = env.reset(seed=1)
        assert env.num_actions == 3 and obs.shape == (1, 3, 16, 16)
        assert obs.min() >= -1 and obs.max() <= 1
        for t in range(1, 41):
            obs, rew, end, trunc, info = env.step(torch.tensor([NOOP]))
            assert not info["life_loss"][0]
            if info["dead"][0]:
                break
        assert t == 40 and end.item() == 1 and trunc.item() == 0  # 10 balls x 4 steps
        assert info["final_observation"].shape == (1, 3, 16, 16)
    finally:
        env.close()


def test_same_seed_same_game_and_state_roundtrip_continues_exactly():
    def frames(env, n):
        return [env.step(torch.tensor([i % 3]))[0] for i in range(n)]

    a = make_atari_env("Catch", seed=0, screen_size=16)
    b = make_atari_env("Catch", seed=0, screen_size=16)
    a.reset(seed=7)
    b.reset(seed=7)
    assert all(torch.equal(x, y) for x, y in zip(frames(a, 30), frames(b, 30)))
    state = a.state_dict()
    after = frames(a, 50)  # crosses a game over: the next game's spawns come from the saved RNG too
    fresh = make_atari_env("Catch", seed=123, screen_size=16)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.obs, b.obs)
    assert all(torch.equal(x, y) for x, y in zip(after, frames(fresh, 50)))
    for env in (a, b, fresh):
        env.close()


def test_collector_resumes_a_catch_game_from_its_saved_state():
    from diamond_kedro.replay.store import ReplayStore
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        store = ReplayStore(f"{tmp}/a")
        col = Collector(make_atari_env("Catch", seed=0, screen_size=16), store=store, seed=0)
        col.collect(num_steps=25)
        state = col.state_dict()
        first = col.collect(num_steps=30)
        store2 = ReplayStore(f"{tmp}/b")
        col2 = Collector(make_atari_env("Catch", seed=99, screen_size=16), store=store2, seed=5)
        col2.load_state_dict(state)
        second = col2.collect(num_steps=30)
        assert first.episode_returns == second.episode_returns
        assert first.episode_lengths == second.episode_lengths
        col.env.close()
        col2.env.close()


# -- the scripted world-model env -------------------------------------------------------------------


def test_scripted_env_frames_equal_catch_frames():
    wm = ScriptedCatchWorldModelEnv(num_envs=1, size=16)
    env = _env()
    for paddle, row, col in [(0, 0, 0), (3, 3, 1), (1, 2, 3)]:
        _put(env, paddle, row, col)
        frame = wm.render(torch.tensor([paddle]), torch.tensor([row]), torch.tensor([col]))[0]
        expected = torch.as_tensor(env.render()).permute(2, 0, 1).float() / 127.5 - 1
        torch.testing.assert_close(frame, expected)


def test_scripted_env_rewards_truncation_ends_and_burn_in():
    wm = ScriptedCatchWorldModelEnv(num_envs=2, horizon=6, context_length=4, num_balls=1, seed=0)
    wm.reset()
    wm.paddle[:] = torch.tensor([0, 0])
    wm.ball_row[:] = torch.tensor([0, 3])
    wm.ball_col[:] = torch.tensor([0, 1])
    # row 1: ball one step from landing, paddle moves right under it -> +1 and its only ball -> end
    obs, rew, end, trunc, info = wm.step(torch.tensor([NOOP, RIGHT]))
    assert rew.tolist() == [0.0, 1.0] and end.tolist() == [0, 1] and trunc.tolist() == [0, 0]
    assert info["final_observation"].shape == (1, 3, 16, 16)
    assert info["burnin_obs"].shape == (1, 3, 3, 16, 16)
    assert wm.ep_len.tolist() == [1, 0]
    # row 0 lands at step 4 on its paddle (both at column 0): +1, end; nothing reaches the horizon
    for _ in range(3):
        obs, rew, end, trunc, info = wm.step(torch.tensor([NOOP, NOOP]))
    assert rew[0].item() == 1.0 and end[0].item() == 1
    wm = ScriptedCatchWorldModelEnv(num_envs=3, horizon=2, seed=0)
    wm.reset()
    wm.step(torch.zeros(3, dtype=torch.long))
    _, _, end, trunc, info = wm.step(torch.zeros(3, dtype=torch.long))
    assert trunc.tolist() == [1, 1, 1] and end.tolist() == [0, 0, 0] and wm.ep_len.tolist() == [0, 0, 0]
    with pytest.raises(ValueError, match="actions"):
        wm.step(torch.tensor([0, 1, 5]))


def test_the_paper_report_leaves_catch_runs_out():
    from diamond_kedro.evaluation.report import _is_own_game

    assert _is_own_game("Catch") and _is_own_game("diamond_kedro/Catch-v0")
    assert not _is_own_game("Breakout") and not _is_own_game("BreakoutNoFrameskip-v4")
