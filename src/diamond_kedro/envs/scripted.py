"""A scripted stand-in for :class:`~diamond_kedro.envs.world_model_env.WorldModelEnv`: batched Catch.

It has the world-model env's interface and semantics (``num_envs``, ``num_actions``, ``horizon``;
``reset() -> obs (N,3,H,W)`` in [-1, 1]; ``step(act) -> obs, rew, end, trunc, info``; rows truncated
after ``horizon`` steps; dead rows restarted inside ``step`` from a fresh context of L frames, with
``info["final_observation"]`` and ``info["burnin_obs"]`` (the new context's first L−1 frames)), but its
frames, rewards and ends come from the rules of :mod:`diamond_kedro.envs.catch` instead of the denoiser
and the reward/end model. So the actor-critic and ``RolloutLoop`` can be trained in "imagination" of
a game whose optimum is known, with no world-model error in the way: if that does not reach the
optimum, the RL side (rollout, λ-returns, loss) is wrong.

Frames are pixel-identical to :class:`~diamond_kedro.envs.catch.CatchEnv`'s (same grid, scaling and
colours; tested), so a policy trained here can be evaluated in the real game.

A context is what the replay would hand the world-model env: L consecutive frames of a game in
progress; here the game starts from a random paddle column and a random ball (row and column) and the
paddle takes L−1 uniformly random moves. With ``num_balls`` set, a row's game ends (``end = 1``) when
that many balls have landed since its context started, exercising the terminal path as well.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from diamond_kedro.envs.catch import _BALL, _PADDLE, CATCH_NUM_ACTIONS


class ScriptedCatchWorldModelEnv:
    def __init__(
        self,
        num_envs: int = 32,
        horizon: int = 15,
        size: int = 16,
        columns: int = 4,
        drop_steps: int = 4,
        context_length: int = 4,
        num_balls: int | None = None,
        device: torch.device | str = "cpu",
        seed: int | None = None,
    ) -> None:
        if num_envs < 1 or horizon < 1 or context_length < 1 or size < 1:
            raise ValueError(
                "ScriptedCatchWorldModelEnv: num_envs, horizon, context_length and size must be >= 1, got "
                f"{num_envs}, {horizon}, {context_length}, {size}"
            )
        if columns < 2 or drop_steps < columns - 1:
            raise ValueError(f"ScriptedCatchWorldModelEnv: need columns >= 2 and drop_steps >= columns - 1, got {columns}, {drop_steps}")
        if num_balls is not None and num_balls < 1:
            raise ValueError(f"ScriptedCatchWorldModelEnv: num_balls must be >= 1 or None, got {num_balls}")
        self.num_envs = num_envs
        self.num_actions = CATCH_NUM_ACTIONS
        self.horizon = horizon
        self.size = size
        self.columns = columns
        self.drop_steps = drop_steps
        self.context_length = context_length
        self.num_balls = num_balls
        self.device = torch.device(device)
        self.gen = torch.Generator(device="cpu")
        self.gen.manual_seed(torch.seed() if seed is None else seed)
        # Rendering tables: which grid row/column each pixel shows (same nearest-neighbour map as CatchEnv)
        ar = torch.arange(size, device=self.device)
        self._row_of_pixel = (ar * (drop_steps + 1)) // size
        self._col_of_pixel = (ar * columns) // size
        self._ball_rgb = torch.as_tensor(_BALL, dtype=torch.float32, device=self.device) / 127.5 - 1
        self._paddle_rgb = torch.as_tensor(_PADDLE, dtype=torch.float32, device=self.device) / 127.5 - 1
        self.paddle = self.ball_row = self.ball_col = self.balls = self.ep_len = None

    # -- game rules on tensors -------------------------------------------------------------------
    def _randint(self, high: int, n: int) -> Tensor:
        return torch.randint(high, (n,), generator=self.gen).to(self.device)

    def render(self, paddle: Tensor, ball_row: Tensor, ball_col: Tensor) -> Tensor:
        """(n,) grid positions -> (n, 3, size, size) frames in [-1, 1], exactly CatchEnv's pixels."""
        rows = self._row_of_pixel.view(1, -1, 1)
        cols = self._col_of_pixel.view(1, 1, -1)
        ball = (rows == ball_row.view(-1, 1, 1)) & (cols == ball_col.view(-1, 1, 1))
        pad = (rows == self.drop_steps) & (cols == paddle.view(-1, 1, 1))
        frame = torch.full((paddle.shape[0], self.size, self.size, 3), -1.0, device=self.device)
        frame[ball] = self._ball_rgb
        frame[pad] = self._paddle_rgb
        return frame.permute(0, 3, 1, 2).contiguous()

    def _advance(self, paddle: Tensor, ball_row: Tensor, ball_col: Tensor, act: Tensor) -> tuple[Tensor, ...]:
        """One Catch step on (n,) tensors: paddle moves, ball drops; landing -> reward, respawn."""
        delta = torch.tensor([0, -1, 1], device=self.device)[act]
        paddle = (paddle + delta).clamp(0, self.columns - 1)
        ball_row = ball_row + 1
        landed = ball_row == self.drop_steps
        rew = (landed & (ball_col == paddle)).float()
        ball_col = torch.where(landed, self._randint(self.columns, paddle.shape[0]), ball_col)
        ball_row = torch.where(landed, torch.zeros_like(ball_row), ball_row)
        return paddle, ball_row, ball_col, rew, landed

    def _new_contexts(self, n: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """n fresh game states and their L context frames (n, L, 3, H, W); the last frame is the current one."""
        paddle = self._randint(self.columns, n)
        ball_row = self._randint(self.drop_steps, n)
        ball_col = self._randint(self.columns, n)
        frames = [self.render(paddle, ball_row, ball_col)]
        for _ in range(self.context_length - 1):
            paddle, ball_row, ball_col, _, _ = self._advance(paddle, ball_row, ball_col, self._randint(self.num_actions, n))
            frames.append(self.render(paddle, ball_row, ball_col))
        return paddle, ball_row, ball_col, torch.stack(frames, dim=1)

    # -- the world-model env's API ---------------------------------------------------------------
    @torch.no_grad()
    def reset(self) -> Tensor:
        n = self.num_envs
        self.paddle, self.ball_row, self.ball_col, frames = self._new_contexts(n)
        self.balls = torch.zeros(n, dtype=torch.long, device=self.device)
        self.ep_len = torch.zeros(n, dtype=torch.long, device=self.device)
        return frames[:, -1].clone()

    @torch.no_grad()
    def step(self, act: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, dict[str, Any]]:
        if self.paddle is None:
            raise RuntimeError("ScriptedCatchWorldModelEnv.step called before reset()")
        act = act.to(self.device).long()
        if act.shape != (self.num_envs,) or (act < 0).any() or (act >= self.num_actions).any():
            raise ValueError(f"expected {self.num_envs} actions in [0, {self.num_actions}), got {act.tolist()}")
        self.paddle, self.ball_row, self.ball_col, rew, landed = self._advance(self.paddle, self.ball_row, self.ball_col, act)
        self.balls += landed.long()
        self.ep_len += 1
        end = torch.zeros(self.num_envs, dtype=torch.uint8, device=self.device)
        if self.num_balls is not None:
            end = (self.balls >= self.num_balls).to(torch.uint8)
        trunc = ((self.ep_len >= self.horizon) & ~end.bool()).to(torch.uint8)
        obs = self.render(self.paddle, self.ball_row, self.ball_col)
        info: dict[str, Any] = {}
        dead = (end | trunc).bool()
        if dead.any():
            k = int(dead.sum())
            info["final_observation"] = obs[dead].clone()
            paddle, ball_row, ball_col, frames = self._new_contexts(k)
            self.paddle[dead], self.ball_row[dead], self.ball_col[dead] = paddle, ball_row, ball_col
            self.balls[dead] = 0
            self.ep_len[dead] = 0
            obs[dead] = frames[:, -1]
            info["burnin_obs"] = frames[:, :-1]
        return obs, rew, end, trunc, info
