"""Collecting real-environment experience into the replay store (spec §1.6, §5.5, §6.1 step 2).

A :class:`Collector` owns an env, the actor-critic's LSTM state while acting, and -- for the train
collector -- the id of the replay episode each sub-env is currently writing. It is *resumable*: each
``collect`` call continues exactly where the previous one stopped (same game, same LSTM state, same
dataset episode), which is how DIAMOND interleaves 100 env steps with training in every epoch.

Writing rule (train collector): a sub-env's buffer is written as a chunk of its episode when the
episode dies (with its final observation) and at the end of every call (the in-progress part; the next
call appends to the same episode id). Buffers are emptied at the start of each call, so no transition
is ever written twice. Test collector: a fresh reset at every call and only completed episodes stored.

Resuming after a process restart: :meth:`Collector.state_dict` includes the emulator state of every
sub-env (ale-py's ``cloneState(include_rng=True)`` + the preprocessing wrapper's lives/frame buffers/no-op
RNG), so a killed-and-resumed run continues the very same game and dataset episode. If a state without
the emulator part is loaded (``include_env=False``), the in-progress episodes cannot continue: their ids
are reported in :attr:`Collector.orphaned_episode_ids` (the pipeline should close them as truncated) and
the next call starts from a fresh reset.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import numpy as np
import torch
from tqdm.auto import tqdm

from diamond_kedro.envs.atari import TorchAtariEnv

HiddenState = tuple[torch.Tensor, torch.Tensor]
# policy(obs (N,3,H,W) float in [-1,1], hx_cx or None) -> (logits (N,A), value (N,), hx_cx)
Policy = Callable[[torch.Tensor, HiddenState | None], tuple[torch.Tensor, torch.Tensor, HiddenState]]


class ReplaySink(Protocol):
    """What the collector needs from ``diamond_kedro.replay.store`` (the episode store)."""

    num_steps: int
    counter_rew: dict

    def add_chunk(self, chunk: Any, episode_id: int | None = None, epoch: int = 0) -> int: ...


@dataclass
class CollectStats:
    """What one (or several merged) collect call(s) did; episode lists are in order of completion."""

    num_steps: int = 0
    num_episodes: int = 0
    episode_ids: list[int | None] = field(default_factory=list)
    episode_returns: list[float] = field(default_factory=list)
    episode_lengths: list[int] = field(default_factory=list)
    dataset_num_steps: int = 0
    counter_rew: dict = field(default_factory=dict)
    seconds: float = 0.0

    def merge(self, later: "CollectStats") -> "CollectStats":
        """Stats of this call followed by ``later`` (dataset counters are taken from ``later``)."""
        return CollectStats(
            num_steps=self.num_steps + later.num_steps,
            num_episodes=self.num_episodes + later.num_episodes,
            episode_ids=self.episode_ids + later.episode_ids,
            episode_returns=self.episode_returns + later.episode_returns,
            episode_lengths=self.episode_lengths + later.episode_lengths,
            dataset_num_steps=later.dataset_num_steps,
            counter_rew=dict(later.counter_rew),
            seconds=self.seconds + later.seconds,
        )

    def to_metrics(self, prefix: str = "train_dataset") -> dict[str, float]:
        """Per-call scalars with the original's names (spec §6.5): ``<prefix>/num_steps``, ``counts/rew_*``."""
        names = {-1: "rew_-1", 0: "rew__0", 1: "rew_+1"}
        out = {f"{prefix}/num_steps": float(self.dataset_num_steps)}
        for sign, name in names.items():
            out[f"{prefix}/counts/{name}"] = float(self.counter_rew.get(sign, 0))
        return out


def minority_reward_count(counter_rew: dict) -> int:
    """Number of transitions whose reward sign is *not* the most frequent one (spec §6.1 step 2)."""
    counts = [int(c) for c in counter_rew.values()]
    return sum(counts) - max(counts) if counts else 0


def _episode_chunk(**fields: Any) -> Any:
    # imported lazily: the replay package is a sibling library module written separately
    from diamond_kedro.replay.store import EpisodeChunk

    return EpisodeChunk(**fields)


class Collector:
    """Resumable real-env collector.

    Args:
        env: a :class:`TorchAtariEnv` (train: ``done_on_life_loss=True``; test: False).
        store: the replay store to append to, or None to only measure returns.
        policy: ``ActorCritic`` (or any callable with its ``forward`` signature); None = uniform random.
        epsilon: probability, per step, of replacing the actions of *all* sub-envs by uniform random
            ones (one coin for the batch, as in the original; spec §1.6). 0.01 train, 0 test.
        train: True = persistent train collector; False = test collector (fresh reset per call, only
            completed episodes stored).
        seed: seeds the collector's RNG (action sampling, ε coin).
    """

    def __init__(
        self,
        env: TorchAtariEnv,
        store: ReplaySink | None = None,
        policy: Policy | None = None,
        epsilon: float = 0.0,
        train: bool = True,
        seed: int | None = None,
    ) -> None:
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
        if train and store is not None and env.num_envs > 1:
            # The replay store lets only its newest episode grow (append-only, chronological ids), so
            # N sub-envs cannot each keep an open episode across calls. The paper collects with 1 env.
            raise ValueError(
                f"a train Collector writing to a replay store needs num_envs == 1 (got {env.num_envs}): "
                "the store can only continue its newest episode across collect calls"
            )
        self.env = env
        self.store = store
        self.policy = policy
        self.epsilon = float(epsilon)
        self.train = train
        self.rng = np.random.default_rng(seed)
        n = env.num_envs
        self.num_envs = n
        self.num_actions = env.num_actions
        self.obs: torch.Tensor | None = None  # current observation, model format
        self.obs_uint8: np.ndarray | None = None  # current observation, storage format (N,H,W,3)
        self.hx_cx: HiddenState | None = None
        self.episode_ids: list[int | None] = [None] * n
        self.episode_returns = np.zeros(n, dtype=np.float64)  # running over chunks of the same episode
        self.episode_lengths = np.zeros(n, dtype=np.int64)
        self.orphaned_episode_ids: list[int] = []

    # -- acting ----------------------------------------------------------------------------------
    def select_actions(self, obs: torch.Tensor) -> np.ndarray:
        """Sample a_t ~ π(·|o_t, h_t) for every sub-env, then the batch-wide ε coin; updates the LSTM state."""
        n, a = self.num_envs, self.num_actions
        if self.policy is None:
            act = self.rng.integers(a, size=n)
        else:
            with torch.no_grad():
                logits, _, self.hx_cx = self.policy(obs, self.hx_cx)
            probs = torch.softmax(logits.float(), dim=-1).cpu().numpy().astype(np.float64)
            # inverse-CDF sampling with our own RNG, so the whole collection is reproducible/resumable
            cdf = np.cumsum(probs, axis=-1)
            u = self.rng.random((n, 1)) * cdf[:, -1:]
            act = np.minimum((cdf <= u).sum(axis=-1), a - 1)
        if self.epsilon > 0 and self.rng.random() < self.epsilon:
            act = self.rng.integers(a, size=n)
        return act.astype(np.int64)

    def _reset_env(self) -> None:
        self.obs = self.env.reset()
        self.obs_uint8 = self.env.obs_uint8.copy()
        self.hx_cx = None
        self.episode_ids = [None] * self.num_envs
        self.episode_returns[:] = 0
        self.episode_lengths[:] = 0

    # -- collecting -----------------------------------------------------------------------------
    def collect(self, num_steps: int | None = None, num_episodes: int | None = None, epoch: int = 0) -> CollectStats:
        """Advance all sub-envs until ``num_steps`` transitions (summed over sub-envs) were collected or
        ``num_episodes`` episodes finished (exactly one of the two). With N sub-envs the step count is
        rounded up to a multiple of N (every iteration steps all of them)."""
        if (num_steps is None) == (num_episodes is None):
            raise ValueError("give exactly one of num_steps or num_episodes")
        target = num_steps if num_steps is not None else num_episodes
        if target is None or target <= 0:
            raise ValueError(f"num_steps/num_episodes must be positive, got {target}")
        t0 = time.perf_counter()
        if not self.train or self.obs is None:
            self._reset_env()  # test collector: fresh seeds every evaluation
        n = self.num_envs
        buffers: list[dict[str, list]] = [self._empty_buffer() for _ in range(n)]
        stats = CollectStats()
        bar = tqdm(
            total=target,
            unit="step" if num_steps is not None else "episode",
            desc="collect (train)" if self.train else "collect (test)",
            leave=False,
            disable=True if target < 10 else None,  # None: only on a terminal, not into log files
        )

        while True:
            act = self.select_actions(self.obs)
            next_obs, rew, end, trunc, info = self.env.step(torch.from_numpy(act))
            rew_np, end_np, trunc_np = rew.cpu().numpy(), end.cpu().numpy(), trunc.cpu().numpy()
            for i in range(n):
                b = buffers[i]
                b["obs"].append(self.obs_uint8[i])
                b["act"].append(act[i])
                b["rew"].append(rew_np[i])
                b["end"].append(end_np[i])
                b["trunc"].append(trunc_np[i])
            self.episode_returns += rew_np
            self.episode_lengths += 1
            stats.num_steps += n

            dead = info["dead"]
            for k, i in enumerate(np.flatnonzero(dead)):
                ep_id = self._write(i, buffers[i], info["final_observation_uint8"][k], epoch)
                stats.num_episodes += 1
                stats.episode_ids.append(ep_id)
                stats.episode_returns.append(float(self.episode_returns[i]))
                stats.episode_lengths.append(int(self.episode_lengths[i]))
                buffers[i] = self._empty_buffer()
                self.episode_ids[i] = None
                self.episode_returns[i] = 0
                self.episode_lengths[i] = 0
            if dead.any() and self.hx_cx is not None:
                # a new (dataset) episode starts: the agent forgets (spec §5.5)
                alive = torch.as_tensor(~dead, dtype=self.hx_cx[0].dtype, device=self.hx_cx[0].device)[:, None]
                self.hx_cx = (self.hx_cx[0] * alive, self.hx_cx[1] * alive)

            self.obs = next_obs
            self.obs_uint8 = info["obs_uint8"].copy()
            bar.update(n if num_steps is not None else int(dead.sum()))
            done = stats.num_steps >= num_steps if num_steps is not None else stats.num_episodes >= num_episodes
            if done:
                break
        bar.close()

        if self.train:
            # the in-progress part of each episode is stored now and continued by the next call
            for i in range(n):
                if buffers[i]["act"]:
                    self.episode_ids[i] = self._write(i, buffers[i], None, epoch)
        # test collector: unfinished episodes are simply dropped

        if self.store is not None:
            stats.dataset_num_steps = int(self.store.num_steps)
            stats.counter_rew = dict(self.store.counter_rew)
        stats.seconds = time.perf_counter() - t0
        return stats

    def collect_initial(
        self,
        min_steps: int = 5000,
        max_steps: int = 10000,
        threshold_rew: int = 10,
        increment: int = 100,
        epoch: int = 0,
    ) -> CollectStats:
        """First-epoch rule (spec §6.1 step 2): ``min_steps``, then ``increment`` more at a time while the
        dataset has fewer than ``threshold_rew`` minority-sign rewards and fewer than ``max_steps`` steps."""
        if self.store is None:
            raise ValueError("collect_initial needs a replay store (it reads the dataset's reward counts)")
        stats = self.collect(num_steps=min_steps, epoch=epoch)
        while minority_reward_count(self.store.counter_rew) < threshold_rew and self.store.num_steps < max_steps:
            stats = stats.merge(self.collect(num_steps=increment, epoch=epoch))
        return stats

    @staticmethod
    def _empty_buffer() -> dict[str, list]:
        return {"obs": [], "act": [], "rew": [], "end": [], "trunc": []}

    def _write(self, i: int, buf: dict[str, list], final_obs: np.ndarray | None, epoch: int) -> int | None:
        if self.store is None:
            return None
        chunk = _episode_chunk(
            obs=np.stack(buf["obs"]).astype(np.uint8, copy=False),
            act=np.asarray(buf["act"], dtype=np.int64),
            rew=np.asarray(buf["rew"], dtype=np.float32),
            end=np.asarray(buf["end"], dtype=np.uint8),
            trunc=np.asarray(buf["trunc"], dtype=np.uint8),
            final_obs=None if final_obs is None else np.asarray(final_obs, dtype=np.uint8),
        )
        return int(self.store.add_chunk(chunk, episode_id=self.episode_ids[i], epoch=epoch))

    # -- resuming -------------------------------------------------------------------------------
    def state_dict(self, include_env: bool = True) -> dict[str, Any]:
        """Picklable state (torch.save-able). ``include_env`` adds the emulator states of all sub-envs."""
        return {
            "started": self.obs is not None,
            "obs_uint8": None if self.obs_uint8 is None else self.obs_uint8.copy(),
            "hx_cx": None if self.hx_cx is None else tuple(t.detach().cpu().clone() for t in self.hx_cx),
            "episode_ids": list(self.episode_ids),
            "episode_returns": self.episode_returns.copy(),
            "episode_lengths": self.episode_lengths.copy(),
            "rng": self.rng.bit_generator.state,
            "env": self.env.state_dict() if (include_env and self.obs is not None) else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
        if not state["started"]:
            self.obs = self.obs_uint8 = self.hx_cx = None
            self.episode_ids = [None] * self.num_envs
            return
        if state["env"] is None:
            # the game cannot be continued: forget the open episodes, restart from a reset next call
            self.orphaned_episode_ids = [e for e in state["episode_ids"] if e is not None]
            self.obs = self.obs_uint8 = self.hx_cx = None
            self.episode_ids = [None] * self.num_envs
            self.episode_returns[:] = 0
            self.episode_lengths[:] = 0
            return
        self.env.load_state_dict(state["env"])
        self.obs_uint8 = np.array(state["obs_uint8"], dtype=np.uint8, copy=True)
        self.obs = self.env.obs
        dev = self.env.device
        self.hx_cx = None if state["hx_cx"] is None else tuple(t.to(dev) for t in state["hx_cx"])
        self.episode_ids = list(state["episode_ids"])
        self.episode_returns = np.array(state["episode_returns"], dtype=np.float64)
        self.episode_lengths = np.array(state["episode_lengths"], dtype=np.int64)
        self.orphaned_episode_ids = []
