"""Collector (spec §1.6, §5.5, §6.1 step 2) on real Breakout ROMs with the real replay store; CPU, tiny."""

from __future__ import annotations


import numpy as np
import pytest
import torch

from diamond_kedro.envs.atari import make_atari_env
from diamond_kedro.envs.collector import Collector, minority_reward_count
from diamond_kedro.replay.store import ReplayStore
from diamond_kedro.utils.state_file import load_state_file, save_state_file

torch.set_num_threads(1)


class RecordingEnv:
    """Delegates to a TorchAtariEnv and logs, independently of the collector, what really happened."""

    def __init__(self, env):
        self.env = env
        self.num_envs, self.num_actions, self.device = env.num_envs, env.num_actions, env.device
        self.log: list[dict] = []  # one entry per step: obs the action was taken on, act, rew, end, trunc, final
        self.resets = 0

    @property
    def obs_uint8(self):
        return self.env.obs_uint8

    @property
    def obs(self):
        return self.env.obs

    def reset(self, seed=None):
        self.resets += 1
        return self.env.reset(seed)

    def step(self, act):
        before = self.env.obs_uint8.copy()
        obs, rew, end, trunc, info = self.env.step(act)
        self.log.append(
            dict(obs=before, act=act.numpy().copy(), rew=rew.numpy().copy(), end=end.numpy().copy(),
                 trunc=trunc.numpy().copy(), dead=info["dead"].copy(), final=info["final_observation_uint8"].copy())
        )
        return obs, rew, end, trunc, info

    def state_dict(self):
        return self.env.state_dict()

    def load_state_dict(self, s):
        self.env.load_state_dict(s)


def _stored_concat(store: ReplayStore) -> dict[str, np.ndarray]:
    eps = store.load_all()
    return {k: np.concatenate([getattr(e, k) for e in eps]) for k in ("obs", "act", "rew", "end", "trunc")}


def test_train_collector_resumes_episode_across_calls_without_duplication(tmp_path):
    store = ReplayStore(tmp_path / "train")
    env = RecordingEnv(make_atari_env("Breakout", 1, done_on_life_loss=True, seed=0))
    col = Collector(env, store, policy=None, epsilon=0.01, train=True, seed=0)

    s1 = col.collect(num_steps=10, epoch=0)
    # 10 steps = 40 frames: Breakout cannot lose a life that fast, so episode 0 is open
    assert s1.num_steps == 10 and store.num_steps == 10 and store.num_episodes == 1
    assert not store.is_finished(0) and col.episode_ids == [0]

    total = 10
    for epoch, n in enumerate([30, 30, 30], start=1):
        s = col.collect(num_steps=n, epoch=epoch)
        total += n
        assert s.num_steps == n and store.num_steps == total == s.dataset_num_steps
    assert env.resets == 1  # the train collector never resets the env between calls

    # the same episode id received a second chunk, tagged with the second call's epoch
    assert store.chunk_epochs(0)[:2] == [0, 1]
    # every step taken is stored exactly once, in order (hand log kept by the env spy)
    stored = _stored_concat(store)
    log = env.log
    assert len(log) == total
    assert np.array_equal(stored["obs"], np.stack([e["obs"][0] for e in log]))
    assert np.array_equal(stored["act"], np.array([e["act"][0] for e in log]))
    assert np.array_equal(stored["rew"], np.array([e["rew"][0] for e in log]))
    assert np.array_equal(stored["end"], np.array([e["end"][0] for e in log]))
    # episodes are cut exactly at deaths, each finished one keeps its final frame
    deaths = [t for t, e in enumerate(log) if e["dead"][0]]
    assert len(deaths) >= 2  # random Breakout loses a life every ~25-35 steps
    assert store.num_episodes == len(deaths) + (0 if deaths[-1] == total - 1 else 1)
    for k, t in enumerate(deaths):
        ep = store.load_episode(k)
        assert ep.end[-1] == 1 and ep.finished
        assert np.array_equal(ep.final_obs, log[t]["final"][0])
    assert s1.episode_ids == [] and s1.num_episodes == 0  # no death in the first call


def test_episode_metrics_match_store(tmp_path):
    store = ReplayStore(tmp_path / "train")
    env = make_atari_env("Breakout", 1, done_on_life_loss=True, seed=1)
    col = Collector(env, store, epsilon=0.0, seed=1)
    stats = col.collect(num_steps=20).merge(col.collect(num_steps=60, epoch=1))
    assert stats.num_steps == 80 and stats.num_episodes == len(stats.episode_ids) >= 1
    for eid, ret, length in zip(stats.episode_ids, stats.episode_returns, stats.episode_lengths):
        ep = store.load_episode(eid)
        assert length == ep.length  # spans both calls for episode 0
        assert ret == pytest.approx(float(ep.rew.sum()))
    m = stats.to_metrics("train_dataset")
    assert m["train_dataset/num_steps"] == 80
    assert m["train_dataset/counts/rew__0"] + m["train_dataset/counts/rew_+1"] == 80  # Breakout: no negative rewards


def test_test_collector_stores_only_complete_episodes_and_resets_each_call(tmp_path):
    store = ReplayStore(tmp_path / "test")
    # 2 sub-envs, a 200-frame cap so full games are short (truncated after <= 50 steps)
    env = RecordingEnv(
        make_atari_env("Breakout", 2, done_on_life_loss=False, seed=3, vectorization="sync", max_num_frames_per_episode=200)
    )
    col = Collector(env, store, epsilon=0.0, train=False, seed=3)
    stats = col.collect(num_episodes=1)
    assert env.resets == 1
    assert stats.num_episodes >= 1 and store.num_episodes == stats.num_episodes
    assert all(store.is_finished(i) for i in store.episode_ids)
    assert store.num_steps == sum(stats.episode_lengths)
    # steps of the episode still running when the call stopped were taken but not stored
    assert stats.num_steps == 2 * len(env.log)
    dropped = stats.num_steps - store.num_steps
    died_both = bool(env.log[-1]["dead"].all())
    # the call stops at the first death; a row still alive then had none of its steps stored
    assert dropped == (0 if died_both else len(env.log))
    stats2 = col.collect(num_episodes=2)
    assert env.resets == 2  # fresh reset for every evaluation
    assert store.num_episodes == stats.num_episodes + stats2.num_episodes
    assert all(store.is_finished(i) for i in store.episode_ids)


def test_train_collector_with_several_envs_is_refused(tmp_path):
    env = make_atari_env("Breakout", 2, done_on_life_loss=True, vectorization="sync")
    with pytest.raises(ValueError, match="num_envs == 1"):
        Collector(env, ReplayStore(tmp_path / "s"), train=True)
    Collector(env, None, train=True)  # without a store (e.g. returns only) it is fine


class ConstantPolicy:
    """logits = log(p) for every env; hidden state h counts the steps since it was last zeroed."""

    def __init__(self, probs):
        self.logits = torch.log(torch.tensor(probs, dtype=torch.float32))
        self.h_in: list[torch.Tensor] = []

    def __call__(self, obs, hx_cx):
        n = obs.shape[0]
        if hx_cx is None:
            hx_cx = (torch.zeros(n, 1), torch.zeros(n, 1))
        self.h_in.append(hx_cx[0][:, 0].clone())
        return self.logits.expand(n, -1), torch.zeros(n), (hx_cx[0] + 1, hx_cx[1] + 1)


def test_epsilon_is_one_coin_for_all_envs():
    env = make_atari_env("Breakout", 8, vectorization="sync")
    always_noop = ConstantPolicy([1.0, 0.0, 0.0, 0.0])  # log 0 = -inf: the policy only picks NOOP
    col = Collector(env, None, policy=always_noop, epsilon=0.5, seed=0)
    obs = torch.zeros(8, 3, 64, 64)
    acts = np.stack([col.select_actions(obs) for _ in range(2000)])
    flipped = (acts != 0).any(axis=1)
    # one coin: P(any non-NOOP) = 0.5·(1 − (1/4)^8) ≈ 0.49999; with one coin per env it would be
    # 1 − (0.5 + 0.5/4)^8 ≈ 0.977
    assert 0.45 < flipped.mean() < 0.55
    # on a flipped step all 8 actions are uniform: 8 · 3/4 = 6 non-NOOPs on average (per-env coins: 3)
    assert 5.6 < (acts[flipped] != 0).sum(axis=1).mean() < 6.4
    col.epsilon = 0.0
    assert all((col.select_actions(obs) == 0).all() for _ in range(100))


def test_actions_are_sampled_from_the_policy():
    env = make_atari_env("Breakout", 8, vectorization="sync")
    p = [0.1, 0.2, 0.3, 0.4]
    col = Collector(env, None, policy=ConstantPolicy(p), epsilon=0.0, seed=0)
    acts = np.concatenate([col.select_actions(torch.zeros(8, 3, 64, 64)) for _ in range(2000)])
    freq = np.bincount(acts, minlength=4) / len(acts)
    # 16000 draws: standard error <= sqrt(0.25/16000) = 0.004
    assert np.allclose(freq, p, atol=0.02)


def test_lstm_state_zeroed_for_dead_envs(tmp_path):
    env = RecordingEnv(make_atari_env("Breakout", 1, done_on_life_loss=True, seed=5))
    policy = ConstantPolicy([0.25] * 4)
    col = Collector(env, ReplayStore(tmp_path / "t"), policy=policy, epsilon=0.0, seed=5)
    col.collect(num_steps=40)
    col.collect(num_steps=40, epoch=1)  # the LSTM state also carries over between calls
    dead = [bool(e["dead"][0]) for e in env.log]
    assert any(dead)
    expected, since = [], 0  # hand count: steps since the last death
    for d in dead:
        expected.append(since)
        since = 0 if d else since + 1
    assert [int(h[0]) for h in policy.h_in] == expected


def test_collect_initial_rule(tmp_path):
    def run(threshold, min_steps=20, max_steps=200, inc=10, seed=0):
        store = ReplayStore(tmp_path / f"s{threshold}_{seed}")
        col = Collector(make_atari_env("Breakout", 1, done_on_life_loss=True, seed=seed), store, epsilon=0.01, seed=seed)
        stats = col.collect_initial(min_steps=min_steps, max_steps=max_steps, threshold_rew=threshold, increment=inc)
        return store, stats

    store, stats = run(threshold=0)
    assert store.num_steps == stats.num_steps == 20  # minority >= 0 always: min_steps only
    store, _ = run(threshold=10**6)
    assert store.num_steps == 200  # never enough minority rewards: stop at max_steps

    store, _ = run(threshold=2)
    n0 = store.num_steps
    assert 20 <= n0 <= 200 and (n0 - 20) % 10 == 0
    # recompute the rule from the stored rewards: minority = transitions whose reward sign is not the majority
    signs = np.sign(_stored_concat(store)["rew"]).astype(int)

    def minority(k):
        counts = np.unique(signs[:k], return_counts=True)[1]
        return int(counts.sum() - counts.max())

    assert minority_reward_count({0: 7, 1: 3}) == 3 and minority_reward_count({}) == 0
    if n0 < 200:
        assert minority(n0) >= 2
    if n0 > 20:
        assert minority(n0 - 10) < 2  # it would have stopped one increment earlier otherwise


def test_state_dict_resume_in_fresh_objects_equals_uninterrupted_run(tmp_path):
    def new(root, seed=9):
        env = make_atari_env("Breakout", 1, done_on_life_loss=True, seed=seed)
        return Collector(env, ReplayStore(root), policy=ConstantPolicy([0.25] * 4), epsilon=0.01, seed=seed)

    ref = new(tmp_path / "ref")
    ref.collect(num_steps=15)
    ref.collect(num_steps=45, epoch=1)

    a = new(tmp_path / "run")
    a.collect(num_steps=15)
    save_state_file(a.state_dict(), tmp_path / "state.pt")  # what the pipeline checkpoints (data only)
    del a  # "process killed"
    b = new(tmp_path / "run", seed=123)  # different seeds: everything must come from the state
    b.load_state_dict(load_state_file(tmp_path / "state.pt"))
    assert b.episode_ids == [0]
    b.collect(num_steps=45, epoch=1)

    r, s = _stored_concat(ReplayStore(tmp_path / "ref")), _stored_concat(ReplayStore(tmp_path / "run"))
    for k in r:
        assert np.array_equal(r[k], s[k]), k
    assert ReplayStore(tmp_path / "run").chunk_epochs(0)[:2] == [0, 1]  # same episode continued


def test_state_without_env_orphans_open_episode(tmp_path):
    env = make_atari_env("Breakout", 1, done_on_life_loss=True, seed=0)
    col = Collector(env, ReplayStore(tmp_path / "o"), seed=0)
    col.collect(num_steps=10)
    state = col.state_dict(include_env=False)
    col2 = Collector(make_atari_env("Breakout", 1, done_on_life_loss=True, seed=0), ReplayStore(tmp_path / "o2"), seed=0)
    col2.load_state_dict(state)
    assert col2.orphaned_episode_ids == [0] and col2.episode_ids == [None]


def test_real_actor_critic_policy_runs(tmp_path):
    from diamond_kedro.models.actor_critic import ActorCritic, ActorCriticConfig

    torch.manual_seed(0)
    env = make_atari_env("Breakout", 1, done_on_life_loss=True, seed=0)
    ac = ActorCritic(ActorCriticConfig(num_actions=env.num_actions, channels=(4, 4, 4, 4), lstm_dim=8))
    col = Collector(env, ReplayStore(tmp_path / "ac"), policy=ac, epsilon=0.01, seed=0)
    stats = col.collect(num_steps=5)
    assert stats.num_steps == 5 and col.hx_cx[0].shape == (1, 8)
