"""The real Atari environment, exactly as DIAMOND builds it (spec §1.1–1.4).

Layers, innermost first:

1. ``gymnasium.make("<Game>NoFrameskip-v4", ...)``: ALE with the minimal action set, one emulator frame
   per ``step``, no sticky actions, and ALE's own 108 000-frame episode cap (it surfaces as
   ``truncated=True``; there is no gymnasium ``TimeLimit``).
2. :class:`AtariPreprocessing`: 4-frame skip, max-pool of the last two frames, 64×64 RGB ``INTER_AREA``,
   1–30 random no-ops at reset, per-frame life-loss detection (§1.2).
3. A gymnasium vector env (``SyncVectorEnv`` or ``AsyncVectorEnv``) with ``autoreset_mode=SAME_STEP``:
   a sub-env that terminates or truncates is reset inside the same ``step`` call and its true last
   observation is reported as ``info["final_obs"]`` -- the gymnasium 0.29 behaviour the original relies on.
   (gymnasium 1.x's default ``NEXT_STEP`` mode would instead return the last frame and reset on the
   *following* call, which would put a bogus transition into the dataset.)
4. :class:`TorchAtariEnv`: life loss -> ``end`` (train env only, applied *outside* the sub-env so the game
   itself keeps running), torch tensors in [-1, 1], uint8 copies for the replay store, seeding ``s + i``.

Why not ale-py's native ``AtariVectorEnv`` (C++ threads, faster with many envs): its preprocessing is
fixed to its own choices (FIRE on reset, reward clipping and grayscale by default, its own no-op range
and resize), it exposes neither the pooled 210×160 frame nor per-env emulator states for resuming, and
its ``episodic_life`` is not the "end the dataset episode but keep the game running" rule of §1.1 step 4.
With the paper's single collection env the gymnasium path is the faster one anyway (no IPC).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import cv2
import gymnasium as gym
import numpy as np
import torch

import ale_py

from diamond_kedro.envs.catch import CATCH_ENV_ID  # importing it registers diamond_kedro/Catch-v0

gym.register_envs(ale_py)
# the ALE prints a banner for every emulator it creates; keep warnings and errors only
ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Warning)

# Spec §1.3: the 26 games of the Atari 100k benchmark and the size of their minimal action set.
ATARI_100K_GAMES: dict[str, int] = {
    "Alien": 18,
    "Amidar": 10,
    "Assault": 7,
    "Asterix": 9,
    "BankHeist": 18,
    "BattleZone": 18,
    "Boxing": 18,
    "Breakout": 4,
    "ChopperCommand": 18,
    "CrazyClimber": 9,
    "DemonAttack": 6,
    "Freeway": 3,
    "Frostbite": 18,
    "Gopher": 8,
    "Hero": 18,
    "Jamesbond": 18,
    "Kangaroo": 18,
    "Krull": 18,
    "KungFuMaster": 14,
    "MsPacman": 9,
    "Pong": 6,
    "PrivateEye": 18,
    "Qbert": 6,
    "RoadRunner": 18,
    "Seaquest": 18,
    "UpNDown": 6,
}

_ENV_ID_SUFFIX = "NoFrameskip-v4"

# Our own small games (gymnasium ids), accepted by the factory besides the 26 Atari games.
CUSTOM_GAMES: dict[str, str] = {"Catch": CATCH_ENV_ID}


def resolve_game(name: str) -> str:
    """``"Breakout"``, ``"breakout"`` or ``"BreakoutNoFrameskip-v4"`` -> ``"BreakoutNoFrameskip-v4"``;
    ``"Catch"`` or ``"diamond_kedro/Catch-v0"`` -> ``"diamond_kedro/Catch-v0"`` (our own small game,
    :mod:`diamond_kedro.envs.catch`).

    Only the 26 Atari 100k games (and Catch) are accepted: other ALE games may work technically, but the
    spec's action-set table (and hence model sizes) is only verified for these.
    """
    if not isinstance(name, str):
        raise ValueError(f"game must be a string, got {name!r}")
    key = name.strip()
    if key.lower() in (CUSTOM_GAMES["Catch"].lower(), "catch"):
        return CUSTOM_GAMES["Catch"]
    if key.lower().endswith(_ENV_ID_SUFFIX.lower()):
        key = key[: -len(_ENV_ID_SUFFIX)]
    by_lower = {g.lower(): g for g in ATARI_100K_GAMES}
    game = by_lower.get(key.lower())
    if game is None:
        raise ValueError(
            f"Unknown game {name!r}. Expected one of the 26 Atari 100k games "
            f"(optionally as '<Game>{_ENV_ID_SUFFIX}'): {', '.join(ATARI_100K_GAMES)}; "
            f"or one of our own games: {', '.join(CUSTOM_GAMES)}"
        )
    return game + _ENV_ID_SUFFIX


def game_short_name(game: str) -> str:
    """``"Breakout"`` for any spelling of Breakout, ``"Catch"`` for Catch (run folders, MLflow keys)."""
    env_id = resolve_game(game)
    for short, custom_id in CUSTOM_GAMES.items():
        if env_id == custom_id:
            return short
    return env_id.removesuffix(_ENV_ID_SUFFIX)


def make_base_env(game: str, max_num_frames_per_episode: int = 108_000) -> gym.Env:
    """The raw ALE env of spec §1.1 step 1 (frame skip 1, no sticky actions, ALE frame cap)."""
    return gym.make(
        resolve_game(game),
        full_action_space=False,
        frameskip=1,
        repeat_action_probability=0.0,
        max_num_frames_per_episode=max_num_frames_per_episode,
        max_episode_steps=None,
    )


class AtariPreprocessing(gym.Wrapper):
    """Spec §1.2, exactly: skip 4 summing raw rewards, max-pool frames 3 and 4, 64×64 RGB, 1–30 no-ops.

    The wrapper drives the ALE directly (``ale.act``) instead of calling the inner ``step`` once per
    emulator frame: the result is identical (same action index mapping, same terminal/truncation tests
    as ``AtariEnv.step`` with frameskip 1), but we avoid copying a 210×160×3 screen after every frame.
    ``tests/envs/test_atari.py`` checks the equivalence against a plain replay through ``env.step``.
    """

    def __init__(
        self,
        env: gym.Env,
        noop_max: int = 30,
        frame_skip: int = 4,
        screen_size: int = 64,
        keep_original_obs: bool = True,
    ) -> None:
        super().__init__(env)
        if noop_max < 1:
            raise ValueError(f"noop_max must be >= 1 (the spec draws 1..noop_max no-ops), got {noop_max}")
        if frame_skip < 2:
            raise ValueError(f"frame_skip must be >= 2 to max-pool two frames, got {frame_skip}")
        self.noop_max = noop_max
        self.frame_skip = frame_skip
        self.screen_size = screen_size
        self.keep_original_obs = keep_original_obs

        self.ale = env.unwrapped.ale
        self._action_set = self.ale.getMinimalActionSet()
        if len(self._action_set) != env.action_space.n:
            raise ValueError("AtariPreprocessing expects the minimal action set (full_action_space=False)")
        assert self._action_set[0] == ale_py.Action.NOOP, "action 0 must be NOOP (spec §1.3)"
        h, w = self.ale.getScreenDims()
        self._buffers = np.zeros((2, h, w, 3), dtype=np.uint8)
        self.lives = 0
        self.game_over = False
        self.observation_space = gym.spaces.Box(0, 255, (screen_size, screen_size, 3), np.uint8)

    # -- helpers -----------------------------------------------------------------------------
    def _emulator_frame(self, action_id: Any) -> tuple[float, bool, bool]:
        reward = self.ale.act(action_id)
        return reward, self.ale.game_over(with_truncation=False), self.ale.game_truncated()

    def _observation(self) -> tuple[np.ndarray, dict[str, Any]]:
        # resize (not crop): aspect ratio is deliberately not preserved, as in the original
        obs = cv2.resize(self._buffers[0], (self.screen_size, self.screen_size), interpolation=cv2.INTER_AREA)
        info: dict[str, Any] = {}
        if self.keep_original_obs:
            info["original_obs"] = self._buffers[0].copy()
        return obs, info

    # -- gymnasium API -------------------------------------------------------------------------
    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        action_id = self._action_set[int(action)]
        total_reward = 0.0
        terminated = truncated = False
        life_loss = False
        for t in range(self.frame_skip):
            reward, terminated, truncated = self._emulator_frame(action_id)
            total_reward += reward
            self.game_over = terminated
            lives = self.ale.lives()
            if lives < self.lives:
                life_loss = True
                # Updated on decreases only, as in the original: after a bonus life the stored count
                # stays lower, so the next loss goes unnoticed (a faithful quirk; rare in 100k steps).
                self.lives = lives
            if terminated or truncated:
                break  # buffers keep their older contents, as in the original
            if t == self.frame_skip - 2:
                self.ale.getScreenRGB(self._buffers[1])
            elif t == self.frame_skip - 1:
                self.ale.getScreenRGB(self._buffers[0])
        # max over the last two frames removes Atari sprite flicker
        np.maximum(self._buffers[0], self._buffers[1], out=self._buffers[0])
        obs, info = self._observation()
        info.update(self._info(life_loss))
        return obs, float(total_reward), bool(terminated), bool(truncated), info

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        self.env.reset(seed=seed, options=options)
        # the no-op count comes from the env's RNG (seeded by reset(seed=...)), so it is reproducible
        noops = int(self.env.unwrapped.np_random.integers(1, self.noop_max + 1))
        for _ in range(noops):
            _, terminated, truncated = self._emulator_frame(self._action_set[0])
            if terminated or truncated:
                self.env.reset()
        self.lives = self.ale.lives()
        self.game_over = False
        self.ale.getScreenRGB(self._buffers[0])
        self._buffers[1].fill(0)
        obs, info = self._observation()
        info.update(self._info(False))
        info["noops"] = noops
        return obs, info

    def _info(self, life_loss: bool) -> dict[str, Any]:
        return {
            "life_loss": life_loss,
            "lives": self.lives,
            "episode_frame_number": self.ale.getEpisodeFrameNumber(),
        }

    # -- resuming after a process restart -----------------------------------------------------
    @property
    def emulator_state(self) -> dict[str, Any]:
        """Everything needed to continue the current game bit-for-bit in a fresh process.

        ``cloneState(include_rng=True)`` covers the emulator (RAM, frame counters incl. the per-episode
        frame number used for the 108k cap, the ALE RNG); the rest is this wrapper's own state and the
        numpy RNG that draws the no-op counts of future resets.
        """
        return {
            # the bytes ale-py serialises the state to (data: never unpickled on resume)
            "ale_state": self.ale.cloneState(include_rng=True).serialize(),
            "lives": self.lives,
            "game_over": self.game_over,
            "buffers": self._buffers.copy(),
            "np_random": self.env.unwrapped.np_random.bit_generator.state,
        }

    @emulator_state.setter
    def emulator_state(self, state: dict[str, Any]) -> None:
        self.ale.restoreState(ale_py.ALEState(bytes(state["ale_state"])))
        self.lives = int(state["lives"])
        self.game_over = bool(state["game_over"])
        self._buffers[...] = state["buffers"]
        self.env.unwrapped.np_random.bit_generator.state = state["np_random"]


def make_preprocessed_env(
    game: str,
    max_num_frames_per_episode: int = 108_000,
    noop_max: int = 30,
    frame_skip: int = 4,
    screen_size: int = 64,
    keep_original_obs: bool = True,
) -> AtariPreprocessing:
    return AtariPreprocessing(
        make_base_env(game, max_num_frames_per_episode),
        noop_max=noop_max,
        frame_skip=frame_skip,
        screen_size=screen_size,
        keep_original_obs=keep_original_obs,
    )


@dataclass
class _EnvFn:
    """Picklable env factory (AsyncVectorEnv may start workers with spawn/forkserver)."""

    game: str
    max_num_frames_per_episode: int
    noop_max: int
    frame_skip: int
    screen_size: int
    keep_original_obs: bool

    def __call__(self) -> gym.Env:
        if self.game == CATCH_ENV_ID:
            # Catch is already "preprocessed": frames at the configured size, the same info keys and an
            # ``emulator_state``. One Catch step is one agent step (no frame skip, no no-ops: its random
            # start is the paddle's column), and the frame cap becomes the same agent-step cap.
            # ``.unwrapped``: the vector env reads/writes ``emulator_state`` on the env itself.
            return gym.make(
                CATCH_ENV_ID,
                size=self.screen_size,
                max_steps=max(1, self.max_num_frames_per_episode // self.frame_skip),
                keep_original_obs=self.keep_original_obs,
            ).unwrapped
        return make_preprocessed_env(
            self.game,
            self.max_num_frames_per_episode,
            self.noop_max,
            self.frame_skip,
            self.screen_size,
            self.keep_original_obs,
        )


def uint8_to_model(obs: np.ndarray | torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
    """(..., H, W, 3) uint8 -> (..., 3, H, W) float32 in [-1, 1]: x = 2·(v/255) − 1 (copied on ``device``)."""
    t = torch.as_tensor(obs).to(device)
    t = t.movedim(-1, -3).float().div_(255).mul_(2).sub_(1)
    return t.contiguous()


class TorchAtariEnv:
    """Batched, torch-facing Atari env (spec §1.1 steps 3–5) with the auto-reset of dead sub-envs.

    ``step`` returns ``(obs, rew, end, trunc, info)``:

    * ``obs``   (N, 3, H, W) float32 in [-1, 1]; for a dead row it is the *new* episode's first frame
      (for a life loss in the train env: simply the next frame of the still-running game);
    * ``rew``   (N,) float32 raw 4-frame reward sums; ``end``/``trunc`` (N,) uint8; dead = end | trunc;
    * ``info["dead"]`` (N,) bool; ``info["life_loss"]`` (N,) bool;
      ``info["final_observation"]`` (n_dead, 3, H, W) float32 for the dead rows only (in row order) and
      ``info["final_observation_uint8"]`` (n_dead, H, W, 3) uint8; ``info["obs_uint8"]`` (N, H, W, 3) uint8
      is the returned observation as stored in the replay (also kept in ``self.obs_uint8``).

    ``keep_original_obs`` (default False here, True in the bare wrapper) adds the pooled 210×160×3 frames
    as ``info["original_obs"]`` (N, 210, 160, 3); nothing in training uses them, so they are not copied
    through the vector env by default.

    Difference from the original (spec §12 item 12): when several sub-envs die in one step, each keeps
    its own final frame (the original overwrote all final frames by the returned batch whenever any
    sub-env lost a life). With one env, as in the paper, the two agree.
    """

    def __init__(
        self,
        game: str,
        num_envs: int = 1,
        done_on_life_loss: bool = False,
        seed: int | None = None,
        device: torch.device | str = "cpu",
        vectorization: str = "auto",
        max_num_frames_per_episode: int = 108_000,
        noop_max: int = 30,
        frame_skip: int = 4,
        screen_size: int = 64,
        keep_original_obs: bool = False,
    ) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        if vectorization not in ("auto", "sync", "async"):
            raise ValueError(f"vectorization must be 'auto', 'sync' or 'async', got {vectorization!r}")
        if vectorization == "auto":
            # one env: no worker process, no IPC; several: one process per sub-env uses all cores
            vectorization = "sync" if num_envs == 1 else "async"
        self.env_id = resolve_game(game)
        self.num_envs = num_envs
        self.done_on_life_loss = done_on_life_loss
        self.device = torch.device(device)
        self.vectorization = vectorization
        env_fn = _EnvFn(self.env_id, max_num_frames_per_episode, noop_max, frame_skip, screen_size, keep_original_obs)
        vec_cls = gym.vector.SyncVectorEnv if vectorization == "sync" else gym.vector.AsyncVectorEnv
        self.vec = vec_cls([env_fn] * num_envs, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
        self.num_actions = int(self.vec.single_action_space.n)
        # draws the episode-loop seed s of spec §1.4 when reset() is called without one
        self._seed_rng = random.Random(seed)
        self.obs_uint8: np.ndarray | None = None
        self._has_reset = False

    # -- API -----------------------------------------------------------------------------------
    def reset(self, seed: int | None = None) -> torch.Tensor:
        """Reset every sub-env; sub-env i is seeded with s + i (s drawn from the env's RNG if None)."""
        s = self._seed_rng.randint(0, 2**31 - 1 - self.num_envs) if seed is None else int(seed)
        obs, _ = self.vec.reset(seed=[s + i for i in range(self.num_envs)])
        self._has_reset = True
        self.obs_uint8 = np.array(obs, dtype=np.uint8, copy=True)
        return uint8_to_model(self.obs_uint8, self.device)

    def step(self, act: torch.Tensor | np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, dict]:
        if not self._has_reset:
            raise RuntimeError("TorchAtariEnv.step called before reset()")
        act_np = act.detach().cpu().numpy() if isinstance(act, torch.Tensor) else np.asarray(act)
        act_np = act_np.astype(np.int64).reshape(self.num_envs)
        if (act_np < 0).any() or (act_np >= self.num_actions).any():
            raise ValueError(f"actions must be in [0, {self.num_actions}), got {act_np.tolist()}")
        obs, rew, terminated, truncated, vinfo = self.vec.step(act_np)
        obs = np.array(obs, dtype=np.uint8, copy=True)

        game_dead = np.logical_or(terminated, truncated)
        # After a same-step reset the row's info is the *reset* info; the step's own info is in final_info.
        life_loss = np.asarray(vinfo["life_loss"], dtype=bool).copy()
        if game_dead.any():
            final_info = vinfo["final_info"]
            life_loss[game_dead] = np.asarray(final_info["life_loss"], dtype=bool)[game_dead]

        end = np.asarray(terminated, dtype=bool).copy()
        if self.done_on_life_loss:
            end |= life_loss
        trunc = np.asarray(truncated, dtype=bool)
        dead = end | trunc

        info: dict[str, Any] = {"dead": dead, "life_loss": life_loss, "obs_uint8": obs}
        dead_idx = np.flatnonzero(dead)
        final_u8 = np.empty((len(dead_idx), *obs.shape[1:]), dtype=np.uint8)
        for k, i in enumerate(dead_idx):
            # a game over/truncation reset the sub-env: its true last frame is in final_obs; a mere
            # life loss did not reset anything, so the returned frame *is* the last frame of the episode
            final_u8[k] = vinfo["final_obs"][i] if game_dead[i] else obs[i]
        info["final_observation_uint8"] = final_u8
        info["final_observation"] = uint8_to_model(final_u8, self.device)
        if "original_obs" in vinfo:
            info["original_obs"] = vinfo["original_obs"]

        self.obs_uint8 = obs
        return (
            uint8_to_model(obs, self.device),
            torch.as_tensor(np.asarray(rew, dtype=np.float32), device=self.device),
            torch.as_tensor(end.astype(np.uint8), device=self.device),
            torch.as_tensor(trunc.astype(np.uint8), device=self.device),
            info,
        )

    def close(self) -> None:
        self.vec.close()

    # -- resuming ------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Emulator states of every sub-env + current observations + the seed RNG (picklable)."""
        if not self._has_reset:
            raise RuntimeError("nothing to save: the env was never reset")
        return {
            "env_id": self.env_id,
            "num_envs": self.num_envs,
            "sub_envs": list(self.vec.get_attr("emulator_state")),
            "obs_uint8": self.obs_uint8.copy(),
            "seed_rng": self._seed_rng.getstate(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["env_id"] != self.env_id or state["num_envs"] != self.num_envs:
            raise ValueError(
                f"env state is for {state['env_id']} x{state['num_envs']}, "
                f"this env is {self.env_id} x{self.num_envs}"
            )
        if not self._has_reset:
            self.reset(seed=0)  # gymnasium refuses step() before a reset; the state below overrides it
        self.vec.set_attr("emulator_state", list(state["sub_envs"]))
        self.obs_uint8 = np.array(state["obs_uint8"], dtype=np.uint8, copy=True)
        self._seed_rng.setstate(state["seed_rng"])

    @property
    def obs(self) -> torch.Tensor:
        """The current observation (after the last reset/step) as a model tensor."""
        if self.obs_uint8 is None:
            raise RuntimeError("env not reset yet")
        return uint8_to_model(self.obs_uint8, self.device)


def make_atari_env(
    game: str,
    num_envs: int = 1,
    done_on_life_loss: bool = False,
    seed: int | None = None,
    device: torch.device | str = "cpu",
    **kwargs: Any,
) -> TorchAtariEnv:
    """Train env: ``done_on_life_loss=True``; test env: ``False`` (spec §1.4). kwargs go to TorchAtariEnv."""
    return TorchAtariEnv(game, num_envs=num_envs, done_on_life_loss=done_on_life_loss, seed=seed, device=device, **kwargs)
