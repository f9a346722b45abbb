"""Batched imagination environment: the denoiser generates frames, the reward/end model rewards (spec §5.2).

Interface (same as the real Torch env): ``reset() -> obs (N,3,H,W)``;
``step(act (N,)) -> (obs, rew (N,) float32, end (N,) uint8, trunc (N,) uint8, info)``. Dead rows are
re-initialised inside ``step`` from fresh contexts; ``info["final_observation"]`` (n_dead,3,H,W) holds
their generated last frame and ``info["burnin_obs"]`` (n_dead, L−1, 3, H, W) the first L−1 frames of
their new context (for the actor-critic's burn-in).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import Tensor

from diamond_kedro.models.denoiser import Denoiser
from diamond_kedro.models.diffusion_sampler import DiffusionSampler, DiffusionSamplerConfig
from diamond_kedro.models.rew_end_model import RewEndModel
from diamond_kedro.replay.batch import Batch


@dataclass
class WorldModelEnvConfig:
    horizon: int = 15
    # Paper: 256 batches (≈8k contexts) per refill. Each refill burns in the reward model on every
    # context, which takes minutes on a CPU, so smaller values are allowed (contexts are then fresher).
    num_batches_to_preload: int = 256
    diffusion_sampler: DiffusionSamplerConfig = field(default_factory=DiffusionSamplerConfig)


class ContextStock:
    """Preloaded initial conditions (frames, actions, reward-model burn-in state), handed out in order.

    When fewer than requested remain, the remainder is discarded and a new stock of
    ``num_batches`` batches is loaded and burned in with the *current* reward model (as the authors do).
    """

    def __init__(
        self,
        sample_contexts: Callable[[int], Batch],
        rew_end_model: RewEndModel,
        batch_size: int,
        num_batches: int,
        device: torch.device,
    ) -> None:
        if num_batches < 1:
            raise ValueError(f"num_batches_to_preload must be >= 1, got {num_batches}")
        self.sample_contexts = sample_contexts
        self.rew_end_model = rew_end_model
        self.batch_size = batch_size
        self.num_batches = num_batches
        self.device = device
        self.obs = self.act = self.hx = self.cx = None
        self.cursor = 0
        self.num_refills = 0

    @torch.no_grad()
    def _refill(self) -> None:
        obs_, act_, hx_, cx_ = [], [], [], []
        for _ in range(self.num_batches):
            batch = self.sample_contexts(self.batch_size)
            obs = batch.obs.to(self.device)
            act = batch.act.to(self.device)
            hx, cx = self.rew_end_model.burn_in(obs, act)
            obs_.append(obs)
            act_.append(act)
            # the recurrent state is kept in fp32 whatever autocast computed it in (bf16 under run.amp),
            # so contexts refilled inside and outside autocast can share the env's state tensors
            hx_.append(hx[0].float())
            cx_.append(cx[0].float())
        self.obs, self.act = torch.cat(obs_), torch.cat(act_)
        self.hx, self.cx = torch.cat(hx_), torch.cat(cx_)
        self.cursor = 0
        self.num_refills += 1

    def take(self, n: int) -> tuple[Tensor, Tensor, tuple[Tensor, Tensor]]:
        """n contexts: obs (n,L,3,H,W), act (n,L), (h, c) each (1, n, lstm_dim)."""
        if self.obs is None or self.cursor + n > self.obs.size(0):
            self._refill()
            if n > self.obs.size(0):
                raise ValueError(f"requested {n} contexts but a refill only holds {self.obs.size(0)}")
        sl = slice(self.cursor, self.cursor + n)
        self.cursor += n
        return self.obs[sl], self.act[sl], (self.hx[sl].unsqueeze(0), self.cx[sl].unsqueeze(0))


class WorldModelEnv:
    def __init__(
        self,
        denoiser: Denoiser,
        rew_end_model: RewEndModel,
        sample_contexts: Callable[[int], Batch],
        cfg: WorldModelEnvConfig | None = None,
        num_envs: int = 32,
        return_denoising_trajectory: bool = False,
    ) -> None:
        """``sample_contexts(n)`` must return a Batch of n segments of length L (= the denoiser's number
        of conditioning frames), drawn in left-padding mode (spec §1.7)."""
        self.cfg = cfg or WorldModelEnvConfig()
        self.sampler = DiffusionSampler(denoiser, self.cfg.diffusion_sampler)
        self.rew_end_model = rew_end_model
        self.num_envs = num_envs
        self.num_actions = rew_end_model.cfg.num_actions
        self.horizon = self.cfg.horizon
        self.return_denoising_trajectory = return_denoising_trajectory
        self.contexts = ContextStock(
            sample_contexts, rew_end_model, num_envs, self.cfg.num_batches_to_preload, denoiser.device
        )
        self.obs_buffer: Tensor | None = None

    @property
    def device(self) -> torch.device:
        return self.sampler.denoiser.device

    def _take_contexts(self, n: int) -> tuple[Tensor, Tensor, tuple[Tensor, Tensor]]:
        obs, act, hx_cx = self.contexts.take(n)
        L = self.sampler.denoiser.num_steps_conditioning
        if obs.shape[1] != L or act.shape[1] != L:
            raise ValueError(f"sample_contexts returned segments of length {obs.shape[1]}, expected L={L}")
        return obs, act, hx_cx

    @torch.no_grad()
    def reset(self) -> Tensor:
        obs, act, (hx, cx) = self._take_contexts(self.num_envs)
        self.obs_buffer, self.act_buffer = obs.clone(), act.clone()
        self.hx, self.cx = hx.clone(), cx.clone()
        self.ep_len = torch.zeros(self.num_envs, dtype=torch.long, device=obs.device)
        return self.obs_buffer[:, -1].clone()

    @torch.no_grad()
    def _reset_dead(self, idx: Tensor) -> None:
        """Fresh contexts for rows ``idx`` (long indices: no boolean-mask indexing, which syncs on CUDA)."""
        obs, act, (hx, cx) = self._take_contexts(idx.numel())
        self.obs_buffer[idx] = obs
        self.act_buffer[idx] = act
        self.hx[:, idx] = hx
        self.cx[:, idx] = cx
        self.ep_len[idx] = 0

    @torch.no_grad()
    def step(self, act: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, dict[str, Any]]:
        if self.obs_buffer is None:
            raise RuntimeError("WorldModelEnv.step called before reset()")
        act = act.to(self.act_buffer.device)
        if act.shape[0] != self.num_envs:
            raise ValueError(f"expected {self.num_envs} actions, got shape {tuple(act.shape)}")
        # Context = L real frames, L−1 real actions and the agent's action in the last slot.
        self.act_buffer[:, -1] = act
        next_obs, trajectory = self.sampler.sample(self.obs_buffer, self.act_buffer)
        rew, end, (hx, cx) = self.rew_end_model.predict_rew_end(
            self.obs_buffer[:, -1], act, next_obs, (self.hx, self.cx)
        )
        self.hx, self.cx = hx.float(), cx.float()  # fp32 state, as the context stock's (autocast: bf16 out)
        self.ep_len += 1
        trunc = (self.ep_len >= self.horizon).to(torch.uint8)

        # Shift left; the generated frame enters the last slot (the last action slot is overwritten
        # by the next step's action).
        self.obs_buffer = torch.cat((self.obs_buffer[:, 1:], next_obs.unsqueeze(1)), dim=1)
        self.act_buffer = self.act_buffer.roll(-1, dims=1)

        info: dict[str, Any] = {}
        if self.return_denoising_trajectory:
            info["denoising_trajectory"] = torch.stack(trajectory, dim=1)
        # The one host read of a step: which rows died (how many new contexts to take depends on it).
        # ``info["dead_rows"]`` hands the indices to the rollout loop so it need not read them again.
        idx = (end | trunc).nonzero().squeeze(1)
        info["dead_rows"] = idx
        if idx.numel():
            self._reset_dead(idx)
            info["final_observation"] = next_obs[idx]
            info["burnin_obs"] = self.obs_buffer[idx, :-1]
        return self.obs_buffer[:, -1].clone(), rew, end, trunc, info
