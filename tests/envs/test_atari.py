"""The real Atari env (spec §1.1–1.4) on the ROMs shipped with ale-py; CPU, a few hundred steps each."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from diamond_kedro.envs.atari import (
    ATARI_100K_GAMES,
    make_atari_env,
    make_base_env,
    make_preprocessed_env,
    resolve_game,
)

torch.set_num_threads(1)


def _ale(env, i=0):
    """The ALE of sub-env i of a sync TorchAtariEnv."""
    return env.vec.envs[i].unwrapped.ale


# -- names and action sets -------------------------------------------------------------------------


def test_both_spellings_resolve_to_the_noframeskip_id():
    for name in ("Breakout", "breakout", "BreakoutNoFrameskip-v4", "breakoutnoframeskip-v4", " Breakout "):
        assert resolve_game(name) == "BreakoutNoFrameskip-v4"
    assert resolve_game("UpNDown") == "UpNDownNoFrameskip-v4"


def test_unknown_game_error_lists_the_26_games():
    with pytest.raises(ValueError) as exc:
        resolve_game("Tetris")
    msg = str(exc.value)
    assert "Tetris" in msg
    assert len(ATARI_100K_GAMES) == 26
    for game in ATARI_100K_GAMES:
        assert game in msg
    with pytest.raises(ValueError):
        resolve_game("ALE/Breakout-v5")  # v5 = sticky actions + skip 4: not the paper's setting


@pytest.mark.parametrize(
    "game,expected",
    # spec §1.3 table, typed in by hand (not read from ATARI_100K_GAMES)
    [("Breakout", 4), ("Pong", 6), ("Freeway", 3), ("KungFuMaster", 14), ("Amidar", 10), ("Alien", 18)],
)
def test_minimal_action_counts(game, expected):
    env = make_atari_env(game, num_envs=1)
    try:
        assert env.num_actions == expected
        assert ATARI_100K_GAMES[game] == expected
    finally:
        env.close()


# -- preprocessing wrapper (§1.2) -----------------------------------------------------------------


def test_noop_count_in_1_30_seeded_and_visible_in_frame_number():
    env = make_preprocessed_env("Breakout")
    counts = []
    for seed in range(20):
        _, info = env.reset(seed=seed)
        frames = env.unwrapped.ale.getEpisodeFrameNumber()
        # a fresh ALE episode starts at frame 0 and each no-op is one emulator frame
        assert frames == info["noops"]
        assert 1 <= frames <= 30
        counts.append(frames)
    assert len(set(counts)) > 5  # really random, not a constant
    _, info_again = env.reset(seed=3)
    assert info_again["noops"] == counts[3]  # reproducible from the seed
    env.close()


def test_step_equals_manual_skip_maxpool_resize_of_raw_frames():
    """Replay the same actions through a plain frame-skip-1 env and pool/resize by hand."""
    seed = 11
    env = make_preprocessed_env("Breakout", keep_original_obs=True)
    raw = make_base_env("Breakout")
    obs, info = env.reset(seed=seed)
    raw.reset(seed=seed)
    for _ in range(info["noops"]):
        raw_frame, *_ = raw.step(0)
    # reset: buffer 0 = current screen, buffer 1 = zeros, so the observation is the resized screen
    assert np.array_equal(info["original_obs"], raw_frame)
    assert np.array_equal(obs, cv2.resize(raw_frame, (64, 64), interpolation=cv2.INTER_AREA))
    assert obs.shape == (64, 64, 3) and obs.dtype == np.uint8

    rng = np.random.default_rng(0)
    pooled_differs_from_last = 0
    total_reward = 0.0
    for step in range(120):
        a = int(rng.integers(4)) if step > 0 else 1  # FIRE first so the ball moves
        obs, rew, term, trunc, info = env.step(a)
        frames, rsum = [], 0.0
        for _ in range(4):
            f, r, t, u, _ = raw.step(a)
            frames.append(f)
            rsum += r
            if t or u:
                break
        if term or trunc:
            break
        expected = np.maximum(frames[2], frames[3])
        assert np.array_equal(info["original_obs"], expected), step
        assert np.array_equal(obs, cv2.resize(expected, (64, 64), interpolation=cv2.INTER_AREA)), step
        assert rew == rsum  # raw, unclipped sum over the 4 frames
        total_reward += rew
        pooled_differs_from_last += int(not np.array_equal(expected, frames[3]))
    # the test can tell max-pooling from "take the last frame": the moving ball makes them differ
    assert pooled_differs_from_last > 10
    env.close()
    raw.close()


# -- torch vector env (§1.1 steps 3–5) -------------------------------------------------------------


def test_shapes_dtypes_and_range():
    env = make_atari_env("Pong", num_envs=2, vectorization="sync", seed=0)
    obs = env.reset(seed=0)
    assert obs.shape == (2, 3, 64, 64) and obs.dtype == torch.float32
    assert obs.min() >= -1 and obs.max() <= 1
    # x = 2·(v/255) − 1, checked on the raw uint8 copy
    u8 = env.obs_uint8
    assert u8.shape == (2, 64, 64, 3) and u8.dtype == np.uint8
    assert torch.allclose(obs[1, :, 5, 7], torch.tensor(u8[1, 5, 7], dtype=torch.float32) / 127.5 - 1)
    obs, rew, end, trunc, info = env.step(torch.tensor([0, 1]))
    assert obs.shape == (2, 3, 64, 64) and rew.shape == (2,) and rew.dtype == torch.float32
    assert end.dtype == torch.uint8 and trunc.dtype == torch.uint8
    assert info["final_observation"].shape == (int(info["dead"].sum()), 3, 64, 64)
    with pytest.raises(ValueError):
        env.step(torch.tensor([0, 6]))  # Pong has 6 actions: 6 is out of range
    env.close()


def test_sub_env_i_is_seeded_with_s_plus_i():
    vec = make_atari_env("Breakout", num_envs=2, vectorization="sync")
    single = make_atari_env("Breakout", num_envs=1)
    vec.reset(seed=100)
    single.reset(seed=101)
    assert _ale(vec, 1).getEpisodeFrameNumber() == _ale(single, 0).getEpisodeFrameNumber()
    acts = np.random.default_rng(1).integers(4, size=30)
    for a in acts:
        o2, *_ = vec.step(torch.tensor([0, a]))
        o1, *_ = single.step(torch.tensor([a]))
        assert torch.equal(o2[1], o1[0])
    vec.close()
    single.close()


def _run_until_life_loss(env, rng, max_steps=2000):
    """Step with random actions until a life is lost (without game over); return the step's outputs."""
    for _ in range(max_steps):
        a = torch.tensor([int(rng.integers(env.num_actions))])
        frame_before = _ale(env).getEpisodeFrameNumber()
        lives_before = _ale(env).lives()
        out = env.step(a)
        if out[4]["life_loss"][0] and _ale(env).lives() > 0:
            return out, frame_before, lives_before
    raise AssertionError("no life lost")


def test_life_loss_ends_train_episode_without_resetting_the_game():
    env = make_atari_env("Breakout", num_envs=1, done_on_life_loss=True)
    env.reset(seed=4)
    (obs, rew, end, trunc, info), frame_before, lives_before = _run_until_life_loss(env, np.random.default_rng(0))
    assert end.tolist() == [1] and trunc.tolist() == [0] and info["dead"].tolist() == [True]
    # the game went on: 4 more emulator frames, one life fewer, no reset (a reset restarts at <= 30 frames)
    assert _ale(env).getEpisodeFrameNumber() == frame_before + 4
    assert _ale(env).lives() == lives_before - 1
    # the last frame of the dataset episode is the frame the next one starts from
    assert torch.equal(info["final_observation"], obs)
    env.step(torch.tensor([1]))
    assert _ale(env).getEpisodeFrameNumber() == frame_before + 8
    env.close()


def test_test_env_ignores_life_loss():
    env = make_atari_env("Breakout", num_envs=1, done_on_life_loss=False)
    env.reset(seed=4)
    (obs, rew, end, trunc, info), _, _ = _run_until_life_loss(env, np.random.default_rng(0))
    assert end.tolist() == [0] and not info["dead"][0] and info["final_observation"].shape[0] == 0
    env.close()


def test_game_over_autoresets_and_keeps_true_last_frame():
    env = make_atari_env("Breakout", num_envs=1, done_on_life_loss=True, keep_original_obs=False)
    env.reset(seed=2)
    rng = np.random.default_rng(2)
    for _ in range(5000):
        lives_before = _ale(env).lives()
        obs, rew, end, trunc, info = env.step(torch.tensor([int(rng.integers(4))]))
        if end[0] and lives_before == 1:
            break
    else:
        raise AssertionError("no game over")
    # game over: the sub-env was reset in the same step: new episode at <= 30 frames, 5 lives again
    assert 1 <= _ale(env).getEpisodeFrameNumber() <= 30 and _ale(env).lives() == 5
    assert not torch.equal(info["final_observation"][0], obs[0])
    env.close()


def test_frame_cap_surfaces_as_truncation():
    cap = 40
    env = make_atari_env("Breakout", num_envs=1, max_num_frames_per_episode=cap)
    env.reset(seed=0)
    n = _ale(env).getEpisodeFrameNumber()  # the no-ops
    # NOOP never launches the ball, so only the cap can end it: frames after k steps = n + 4k,
    # truncated on the first step k with n + 4k >= cap
    k_expected = math.ceil((cap - n) / 4)
    for k in range(1, 100):
        obs, rew, end, trunc, info = env.step(torch.tensor([0]))
        if info["dead"][0]:
            break
    assert k == k_expected
    assert trunc.tolist() == [1] and end.tolist() == [0]
    assert 1 <= _ale(env).getEpisodeFrameNumber() <= 30  # auto-reset to a fresh episode
    env.close()


def test_emulator_state_roundtrip_continues_the_same_game():
    a = make_atari_env("Breakout", num_envs=1, done_on_life_loss=True)
    a.reset(seed=7)
    rng = np.random.default_rng(7)
    for _ in range(40):
        a.step(torch.tensor([int(rng.integers(4))]))
    state = a.state_dict()
    b = make_atari_env("Breakout", num_envs=1, done_on_life_loss=True)
    b.load_state_dict(state)
    assert torch.equal(a.obs, b.obs)
    for _ in range(150):  # long enough to cross a life loss
        act = torch.tensor([int(rng.integers(4))])
        oa, ra, ea, ta, _ = a.step(act)
        ob, rb, eb, tb, _ = b.step(act)
        assert torch.equal(oa, ob) and torch.equal(ra, rb) and torch.equal(ea, eb) and torch.equal(ta, tb)
    assert _ale(a).getEpisodeFrameNumber() == _ale(b).getEpisodeFrameNumber()
    a.close()
    b.close()


def test_async_vector_env_same_results_as_sync():
    s = make_atari_env("Breakout", num_envs=2, vectorization="sync")
    a = make_atari_env("Breakout", num_envs=2, vectorization="async")
    try:
        assert torch.equal(s.reset(seed=9), a.reset(seed=9))
        acts = np.random.default_rng(3).integers(4, size=(20, 2))
        for act in acts:
            os_, rs, es, ts, _ = s.step(torch.from_numpy(act))
            oa, ra, ea, ta, _ = a.step(torch.from_numpy(act))
            assert torch.equal(os_, oa) and torch.equal(rs, ra) and torch.equal(es, ea)
        state = a.state_dict()  # emulator states travel through the worker pipes
        s.load_state_dict(state)
        o1, *_ = s.step(torch.tensor([1, 2]))
        o2, *_ = a.step(torch.tensor([1, 2]))
        assert torch.equal(o1, o2)
    finally:
        s.close()
        a.close()
