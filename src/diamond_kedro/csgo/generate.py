"""Imagination with the two CS:GO models (spec §7.5, §7.6): dynamics at 30x56, then the upsampler to 150x280.

Per generated step k (prediction of frame L + k):
  1. the dynamics sampler draws the next low-res frame from the last L low-res frames and the L actions
     ``actions[:, k : k + L]`` (the last one is the action taken on the newest frame); with ``s_cond > 0`` it
     re-noises its copy of the conditioning frames at each denoising step (the buffer itself stays clean);
  2. that frame is bicubic-upsampled x f (``F.interpolate``, as in the upsampler's training);
  3. the upsampler sampler draws the full-res frame from [previous full-res frame, upsampled low-res frame];
  4. both buffers shift by one.
Presets (``csgo_sampler_configs``): ``fast`` = 1 + 1 NFE per frame, ``higher_quality`` = 3 + 10.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from diamond_kedro.models.denoiser import Denoiser
from diamond_kedro.models.diffusion_sampler import DiffusionSampler, csgo_sampler_configs


@torch.no_grad()
def imagine(
    denoiser: Denoiser,
    upsampler: Denoiser,
    low_res_context: Tensor,
    full_res_last: Tensor,
    actions: Tensor,
    preset: str = "fast",
) -> tuple[Tensor, Tensor]:
    """Generate T frames at both resolutions.

    low_res_context (B, L, 3, h, w) in [-1, 1], oldest first; full_res_last (B, 3, H, W) the full-res version
    of the newest context frame; actions (B, L + T - 1, A) vectors or (B, L + T - 1) ids (prediction k uses
    ``actions[:, k:k+L]``).
    Returns (low_res (B, T, 3, h, w), full_res (B, T, 3, H, W)), 8-bit values in [-1, 1].
    """
    if upsampler.cfg.upsampling_factor is None:
        raise ValueError("imagine: the second model must be an upsampler (upsampling_factor set)")
    b, n, c, h, w = low_res_context.shape
    if n != denoiser.num_steps_conditioning:
        raise ValueError(f"imagine: {n} context frames given, the dynamics model conditions on {denoiser.num_steps_conditioning}")
    f = upsampler.cfg.upsampling_factor
    if full_res_last.shape != (b, c, h * f, w * f):
        raise ValueError(f"imagine: full_res_last has shape {tuple(full_res_last.shape)}, expected {(b, c, h * f, w * f)}")
    horizon = actions.size(1) - n + 1
    if actions.ndim not in (2, 3) or actions.size(0) != b or horizon < 1:
        raise ValueError(f"imagine: actions must be (B={b}, L+T-1[, A]) with L={n}, T>=1; got {tuple(actions.shape)}")
    dyn_cfg, up_cfg = csgo_sampler_configs(preset)
    dynamics, upsampling = DiffusionSampler(denoiser, dyn_cfg), DiffusionSampler(upsampler, up_cfg)

    low_buffer = low_res_context.clone()
    prev_full = full_res_last
    low_out, full_out = [], []
    for k in range(horizon):
        next_low, _ = dynamics.sample(low_buffer, actions[:, k : k + n])
        next_low_up = F.interpolate(next_low, scale_factor=f, mode="bicubic")
        next_full, _ = upsampling.sample(torch.stack((prev_full, next_low_up), dim=1), None)
        low_out.append(next_low)
        full_out.append(next_full)
        low_buffer = torch.cat((low_buffer[:, 1:], next_low.unsqueeze(1)), dim=1)
        prev_full = next_full
    return torch.stack(low_out, 1), torch.stack(full_out, 1)


@torch.no_grad()
def imagine_dynamics(denoiser: Denoiser, context: Tensor, actions: Tensor, preset: str = "fast") -> Tensor:
    """Step 1 alone (a run without upsampler): (B, T, 3, h, w) frames from ``context`` (B, L, 3, h, w) and
    ``actions`` (B, L + T - 1[, A]), with the dynamics sampler of ``preset``."""
    b, n = context.shape[:2]
    if n != denoiser.num_steps_conditioning:
        raise ValueError(f"imagine: {n} context frames given, the dynamics model conditions on {denoiser.num_steps_conditioning}")
    horizon = actions.size(1) - n + 1
    if actions.ndim not in (2, 3) or actions.size(0) != b or horizon < 1:
        raise ValueError(f"imagine: actions must be (B={b}, L+T-1[, A]) with L={n}, T>=1; got {tuple(actions.shape)}")
    dynamics = DiffusionSampler(denoiser, csgo_sampler_configs(preset)[0])
    buffer, out = context.clone(), []
    for k in range(horizon):
        next_obs, _ = dynamics.sample(buffer, actions[:, k : k + n])
        out.append(next_obs)
        buffer = torch.cat((buffer[:, 1:], next_obs.unsqueeze(1)), dim=1)
    return torch.stack(out, 1)


def to_uint8_frames(x: Tensor) -> "numpy.ndarray":  # noqa: F821
    """(T, 3, H, W) float in [-1, 1] -> (T, H, W, 3) uint8 (the on-disk convention)."""
    return x.clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
