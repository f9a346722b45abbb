"""Catch: a tiny deterministic pixel game with a known optimum, for checking that a whole run learns.

A ball falls down a grid of ``columns`` columns, one row per step; a paddle in the bottom row moves
left, right or stays (3 actions: 0 NOOP, 1 LEFT, 2 RIGHT; moves past a wall are no-ops). The ball
spawns in row 0 of a random column and lands ``drop_steps`` steps later: the paddle moves first, then
the ball drops, and a landing ball on the paddle's column gives +1 (a miss gives 0). The next ball
appears in row 0 at once (in the same step), so the frame after a landing already shows it and the
reward is a function of (frame, action) alone. After ``num_balls`` balls the game is over
(``terminated``). There are no lives: ``info["lives"]`` is 0 and ``info["life_loss"]`` always False.

With ``drop_steps >= columns - 1`` every ball can be reached from anywhere, so the optimal return is
exactly ``num_balls``; a policy that ignores the ball (e.g. uniform random) catches each ball with
probability 1/columns (:func:`random_policy_return_pmf`), so its return is ``num_balls / columns`` on
average: 10 and 2.5 for the defaults.

Frames are RGB uint8 ``(size, size, 3)``: the (drop_steps + 1) × columns grid (ball rows + paddle row)
scaled to ``size`` by nearest-neighbour sampling, black background, red ball, cyan paddle.

Everything random (initial paddle column, ball columns) comes from ``np_random``, seeded by
``reset(seed=...)``; ``emulator_state`` captures the whole game (positions, counters, RNG state), the
counterpart of the ALE's ``cloneState(include_rng=True)`` that the collector stores in ``state.pt``.
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np

CATCH_ENV_ID = "diamond_kedro/Catch-v0"
CATCH_NUM_ACTIONS = 3

_BALL = np.array([255, 64, 64], dtype=np.uint8)
_PADDLE = np.array([64, 224, 255], dtype=np.uint8)


class CatchEnv(gym.Env):
    """The Catch game with the gymnasium API (see the module docstring for the rules)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 15}

    def __init__(
        self,
        size: int = 16,
        columns: int = 4,
        drop_steps: int = 4,
        num_balls: int = 10,
        max_steps: int = 27_000,
        keep_original_obs: bool = False,
        render_mode: str | None = "rgb_array",
    ) -> None:
        for name, value, low in (
            ("size", size, 1),
            ("columns", columns, 2),
            ("drop_steps", drop_steps, 1),
            ("num_balls", num_balls, 1),
            ("max_steps", max_steps, 1),
        ):
            if int(value) != value or value < low:
                raise ValueError(f"CatchEnv: {name} must be an integer >= {low}, got {value!r}")
        if drop_steps < columns - 1:
            # otherwise some balls are out of reach and the optimum is no longer num_balls
            raise ValueError(f"CatchEnv: drop_steps ({drop_steps}) must be >= columns - 1 ({columns - 1})")
        self.size = int(size)
        self.columns = int(columns)
        self.drop_steps = int(drop_steps)
        self.num_balls = int(num_balls)
        self.max_steps = int(max_steps)
        self.keep_original_obs = keep_original_obs
        self.render_mode = render_mode
        self.action_space = gym.spaces.Discrete(CATCH_NUM_ACTIONS)
        self.observation_space = gym.spaces.Box(0, 255, (self.size, self.size, 3), np.uint8)
        rows = self.drop_steps + 1
        # pixel -> grid cell (nearest-neighbour scaling, exact for sizes that are multiples of the grid)
        self._row_of_pixel = (np.arange(self.size) * rows) // self.size
        self._col_of_pixel = (np.arange(self.size) * self.columns) // self.size
        self.paddle = self.ball_row = self.ball_col = 0
        self.balls_done = self.num_steps = 0
        self.game_over = True

    # -- rules ---------------------------------------------------------------------------------
    def _spawn(self) -> None:
        self.ball_row = 0
        self.ball_col = int(self.np_random.integers(self.columns))

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.paddle = int(self.np_random.integers(self.columns))
        self._spawn()
        self.balls_done = self.num_steps = 0
        self.game_over = False
        return self._obs(), self._info()

    def step(self, action: int):
        if self.game_over:
            raise RuntimeError("CatchEnv.step called after the game ended; call reset()")
        action = int(action)
        if not 0 <= action < CATCH_NUM_ACTIONS:
            raise ValueError(f"CatchEnv: action must be 0 (NOOP), 1 (LEFT) or 2 (RIGHT), got {action}")
        self.paddle = min(max(self.paddle + (0, -1, 1)[action], 0), self.columns - 1)
        self.ball_row += 1
        self.num_steps += 1
        reward = 0.0
        if self.ball_row == self.drop_steps:  # the ball lands in the paddle row
            reward = float(self.ball_col == self.paddle)
            self.balls_done += 1
            self._spawn()
        terminated = self.balls_done >= self.num_balls
        truncated = not terminated and self.num_steps >= self.max_steps
        self.game_over = terminated or truncated
        return self._obs(), reward, terminated, truncated, self._info()

    # -- pixels --------------------------------------------------------------------------------
    def _obs(self) -> np.ndarray:
        rows = self._row_of_pixel[:, None]
        cols = self._col_of_pixel[None, :]
        frame = np.zeros((self.size, self.size, 3), dtype=np.uint8)
        frame[(rows == self.ball_row) & (cols == self.ball_col)] = _BALL
        frame[(rows == self.drop_steps) & (cols == self.paddle)] = _PADDLE
        self._last_frame = frame
        return frame.copy()

    def render(self) -> np.ndarray:
        return self._obs()

    def _info(self) -> dict[str, Any]:
        # the keys the Atari preprocessing reports, so the vector env and collector see the same info
        info: dict[str, Any] = {"life_loss": False, "lives": 0, "episode_frame_number": self.num_steps}
        if self.keep_original_obs:
            info["original_obs"] = self._last_frame.copy()
        return info

    # -- resuming after a process restart -----------------------------------------------------
    @property
    def emulator_state(self) -> dict[str, Any]:
        """The whole game, RNG included: restoring it continues the game exactly (cf. ALE cloneState)."""
        return {
            "game": "Catch",
            "paddle": self.paddle,
            "ball_row": self.ball_row,
            "ball_col": self.ball_col,
            "balls_done": self.balls_done,
            "num_steps": self.num_steps,
            "game_over": self.game_over,
            "np_random": self.np_random.bit_generator.state,
        }

    @emulator_state.setter
    def emulator_state(self, state: dict[str, Any]) -> None:
        if not isinstance(state, dict) or state.get("game") != "Catch":
            raise ValueError("not a Catch game state (was the run started with another game?)")
        self.paddle = int(state["paddle"])
        self.ball_row = int(state["ball_row"])
        self.ball_col = int(state["ball_col"])
        self.balls_done = int(state["balls_done"])
        self.num_steps = int(state["num_steps"])
        self.game_over = bool(state["game_over"])
        self.np_random.bit_generator.state = state["np_random"]


def random_policy_return_pmf(columns: int = 4, num_balls: int = 10) -> np.ndarray:
    """P(return = k), k = 0..num_balls, of any policy that ignores the ball (e.g. uniform random).

    Each ball's column is uniform and independent of everything before it, in particular of where such
    a policy puts the paddle, so each ball is caught with probability exactly 1/columns, independently:
    the return is Binomial(num_balls, 1/columns) (mean num_balls/columns; 2.5 for the defaults).
    """
    p = 1.0 / columns
    return np.array([math.comb(num_balls, k) * p**k * (1 - p) ** (num_balls - k) for k in range(num_balls + 1)])


def register() -> None:
    """Register ``diamond_kedro/Catch-v0`` with gymnasium (idempotent)."""
    if CATCH_ENV_ID not in gym.registry:
        gym.register(id=CATCH_ENV_ID, entry_point="diamond_kedro.envs.catch:CatchEnv")


register()
