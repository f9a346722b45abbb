"""Playing an Atari world model: the project's :class:`WorldModelEnv` with one env, driven step by step.

Contexts (the L real frames and L−1 real actions a world-model episode starts from):
* ``"replay"``: segments of the run's test replay (else its train replay), drawn as in training;
* ``"env"``: a fresh reset of the real test env (no life-loss termination), then L−1 random actions.
  With ``side_by_side`` the contexts always come from the real env, and that env then receives the same
  actions as the world model, so the two panels start from the same frame and can be compared.

Actions come from the player (held controls -> the game's minimal action set, :mod:`.keymaps`), the
agent's policy (its actor-critic, sampled as in evaluation) or uniformly at random. The actor-critic
runs every step whatever the controller, so switching to the agent mid-episode finds its LSTM state
up to date (burned in on the context frames at every reset).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from diamond_kedro.envs.atari import TorchAtariEnv, make_base_env
from diamond_kedro.envs.world_model_env import WorldModelEnv, WorldModelEnvConfig
from diamond_kedro.models.diffusion_sampler import DiffusionSamplerConfig
from diamond_kedro.play.keymaps import atari_action
from diamond_kedro.play.loading import AtariSource, PlayError
from diamond_kedro.replay.batch import Batch

POLICIES = ("human", "agent", "random")


def action_names(game: str) -> list[str]:
    """The ALE names of the game's minimal action set, in action-index order (``["NOOP", "FIRE", ...]``)."""
    env = make_base_env(game)
    try:
        return list(env.unwrapped.get_action_meanings())
    finally:
        env.close()


def to_uint8(x: Tensor) -> np.ndarray:
    """(3, H, W) in [−1, 1] -> (H, W, 3) uint8."""
    return x.clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


@dataclass
class Side:
    """One panel's episode bookkeeping (the world model, or the real env)."""

    frame: np.ndarray
    reward: float = 0.0
    end: bool = False
    episode_return: float = 0.0
    done: bool = False  # the real env stays on its last frame once its game is over
    note: str = ""


@dataclass
class RealTrace:
    """What the real env was given since its last reset: enough to replay it in a fresh env."""

    seed: int
    context_actions: list[int] = field(default_factory=list)
    actions: list[int] = field(default_factory=list)


class AtariPlay:
    def __init__(
        self,
        src: AtariSource,
        *,
        device: torch.device | str = "cpu",
        sampler: DiffusionSamplerConfig | None = None,
        horizon: int = 50,
        contexts: str = "auto",
        side_by_side: bool = False,
        policy: str = "agent",
        seed: int = 0,
    ) -> None:
        if policy not in POLICIES:
            raise PlayError(f"unknown policy {policy!r}; choose from {', '.join(POLICIES)}")
        if horizon < 1:
            raise PlayError(f"--horizon must be >= 1, got {horizon}")
        self.device = torch.device(device)
        self.agent = src.agent.to(self.device).eval()
        self.game = src.game
        self.source = src.source
        self.policy = policy
        self.action_names = action_names(self.game)
        self.num_actions = len(self.action_names)
        self.size = self.agent.cfg.actor_critic.img_size
        self.L = self.agent.denoiser.num_steps_conditioning
        self.rng = np.random.default_rng(seed)
        self.seed = seed
        self.side_by_side = side_by_side

        store = None
        if contexts in ("auto", "replay") and not side_by_side:
            store = self._replay_store(src.run_root)
            if store is None and contexts == "replay":
                raise PlayError(f"{src.source}: no run replay to draw contexts from; use --contexts env")
        elif contexts not in ("auto", "replay", "env"):
            raise PlayError(f"unknown --contexts {contexts!r}; choose from auto, replay, env")
        self.contexts = "replay" if store is not None else "env"
        self.real_env: TorchAtariEnv | None = None
        self._replay_sampler = None
        if store is not None:
            from diamond_kedro.replay.sampler import SegmentSampler

            self._replay_sampler = SegmentSampler(
                store, batch_size=1, seq_len=self.L, padding="left", weights=None,
                seed=int(self.rng.integers(2**31)), device=self.device,
            )
        else:
            self.real_env = TorchAtariEnv(self.game, num_envs=1, done_on_life_loss=False, seed=seed,
                                          device=self.device, screen_size=self.size)
        self.sampler_cfg = sampler or DiffusionSamplerConfig()
        self.wm = WorldModelEnv(
            self.agent.denoiser,
            self.agent.rew_end_model,
            self._sample_contexts,
            WorldModelEnvConfig(horizon=horizon, num_batches_to_preload=1, diffusion_sampler=self.sampler_cfg),
            num_envs=1,
        )
        self.num_resets = 0
        self.steps = 0
        self.last_action = 0
        self.last_entropy = self.last_value = 0.0
        self.real: Side | None = None
        self.trace: RealTrace | None = None
        self.last_episode: Side | None = None  # the imagined episode that ended last (shown in the header)
        self.imagined = self._new_episode(self.wm.reset(), self.wm.obs_buffer[:, :-1])

    @staticmethod
    def _replay_store(run_root: Path | None):
        from diamond_kedro.replay.store import ReplayStore

        if run_root is None:
            return None
        for split in ("test", "train"):
            path = run_root / "replay" / split
            if (path / "manifest.json").exists():
                store = ReplayStore(path, create=False)
                if store.num_steps > 0:
                    return store
        return None

    # -- contexts --------------------------------------------------------------------------------
    def _sample_contexts(self, n: int) -> Batch:
        if n != 1:
            raise ValueError(f"play runs one world-model env, asked for {n} contexts")
        self.num_resets += 1
        if self._replay_sampler is not None:
            return self._replay_sampler.sample()
        return self._real_env_context()

    def _real_env_context(self) -> Batch:
        """Reset the real env and take L−1 random actions: the L frames are the world model's context."""
        assert self.real_env is not None
        for _ in range(100):  # an episode that dies within L−1 steps of its start is redrawn
            seed = int(self.rng.integers(2**31 - 2))
            frames = [self.real_env.reset(seed=seed)[0]]
            acts = [int(a) for a in self.rng.integers(self.num_actions, size=self.L - 1)]
            dead = False
            for a in acts:
                obs, _, end, trunc, _ = self.real_env.step(torch.tensor([a]))
                dead = bool(end[0] or trunc[0])
                if dead:
                    break
                frames.append(obs[0])
            if not dead:
                break
        else:
            raise RuntimeError("the real env ended within the context length 100 times in a row")
        self.trace = RealTrace(seed=seed, context_actions=acts)
        self.real = Side(frame=to_uint8(frames[-1]))
        obs = torch.stack(frames).unsqueeze(0).to(self.device)
        act = torch.tensor([acts + [0]], dtype=torch.long, device=self.device)  # the last slot: the next action
        return Batch.of(obs, act)

    @torch.no_grad()
    def _new_episode(self, obs: Tensor, burnin_obs: Tensor) -> Side:
        """Fresh LSTM state burned in on the context's first L−1 frames (the last one is the first input)."""
        self.hx_cx = self.agent.actor_critic.burn_in(burnin_obs) if burnin_obs.shape[1] else None
        self.obs = obs
        return Side(frame=to_uint8(obs[0]))

    # -- control ---------------------------------------------------------------------------------
    def reset(self) -> None:
        """A new world-model episode from new contexts (and a new real game beside it)."""
        self.imagined = self._new_episode(self.wm.reset(), self.wm.obs_buffer[:, :-1])

    def cycle_policy(self) -> str:
        self.policy = POLICIES[(POLICIES.index(self.policy) + 1) % len(POLICIES)]
        return self.policy

    @torch.no_grad()
    def _policy_step(self) -> int:
        logits, value, self.hx_cx = self.agent.actor_critic(self.obs, self.hx_cx)
        dist = torch.distributions.Categorical(logits=logits[0])
        self.last_entropy = float(dist.entropy()) / np.log(2)  # bits, as the authors' header shows
        self.last_value = float(value[0])
        return int(dist.sample())

    @torch.no_grad()
    def step(self, controls: set[str] | None = None, action: int | None = None) -> int:
        """One step of both panels; returns the action taken. ``action`` (an index) wins over the
        controller; otherwise human play reads ``controls``, the agent samples, random draws uniformly."""
        agent_action = self._policy_step()
        if action is None:
            if self.policy == "human":
                action = atari_action(controls or set(), self.action_names)
            elif self.policy == "agent":
                action = agent_action
            else:
                action = int(self.rng.integers(self.num_actions))
        if not 0 <= action < self.num_actions:
            raise PlayError(f"action {action} out of range for {self.game} ({self.num_actions} actions)")
        self.last_action = action
        self.steps += 1

        # The real env first: a world-model episode that ends below resets the real env for the next one.
        if self.side_by_side and self.real is not None and not self.real.done:
            obs, rew, end, trunc, info = self.real_env.step(torch.tensor([action]))
            self.trace.actions.append(action)
            r = self.real
            r.reward, r.end = float(rew[0]), bool(end[0])
            r.episode_return += r.reward
            if end[0] or trunc[0]:
                r.done, r.note = True, "game over" if end[0] else "time limit"
                r.frame = info["final_observation_uint8"][0]
            else:
                r.frame = info["obs_uint8"][0]

        obs, rew, end, trunc, info = self.wm.step(torch.tensor([action], device=self.device))
        im = self.imagined
        im.reward, im.end = float(rew[0]), bool(end[0])
        im.episode_return += im.reward
        if end[0] or trunc[0]:
            ended = Side(frame=to_uint8(info["final_observation"][0]), reward=im.reward, end=im.end,
                         episode_return=im.episode_return, note="end" if end[0] else "horizon")
            self.imagined = self._new_episode(obs, info["burnin_obs"])
            self.last_episode = ended
        else:
            im.frame = to_uint8(obs[0])
            self.obs = obs
        return action

    def panels(self) -> list[tuple[str, np.ndarray]]:
        out = [("world model", self.imagined.frame)]
        if self.side_by_side and self.real is not None:
            out.append(("real" + (f" ({self.real.note})" if self.real.done else ""), self.real.frame))
        return out

    def hud(self) -> list[str]:
        name = self.action_names[self.last_action]
        s = self.sampler_cfg
        lines = [
            f"{self.game}  policy: {self.policy} (m)  step {self.steps}  action {name}",
            f"world model: rew {self.imagined.reward:+.0f} end {int(self.imagined.end)} return {self.imagined.episode_return:+.0f}"
            f"  | value {self.last_value:+.2f} entropy {self.last_entropy:.2f} bits",
        ]
        if self.side_by_side and self.real is not None:
            lines.append(f"real: rew {self.real.reward:+.0f} end {int(self.real.end)} return {self.real.episode_return:+.0f}")
        lines.append(f"sampler: {s.num_steps_denoising} steps {'Euler' if s.order == 1 else 'Heun'}  contexts: {self.contexts}"
                     f"  horizon {self.wm.horizon}")
        if self.last_episode is not None:
            lines.append(f"last imagined episode: return {self.last_episode.episode_return:+.0f} ({self.last_episode.note})")
        return lines

    def close(self) -> None:
        if self.real_env is not None:
            self.real_env.close()
