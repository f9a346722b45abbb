"""Next-frame sampler: Karras σ schedule + Euler/Heun steps with DIAMOND's quirks (spec §3, §7.6).

Quirks kept on purpose (they define how every published rollout was generated):
* the initial state is x ~ N(0, I), unit variance, although the first level is σ_max;
* with churn the denoiser is queried at σ, not at the raised σ̂;
* with ``s_cond > 0`` the conditioning frames are re-noised with s_cond·N(0, I) before *every*
  denoiser call of the same frame, on top of the previous corruption (the caller's buffer is untouched).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from diamond_kedro.models.denoiser import Denoiser


@dataclass
class DiffusionSamplerConfig:
    num_steps_denoising: int = 3
    sigma_min: float = 2e-3
    sigma_max: float = 5.0
    rho: float = 7
    order: int = 1
    s_churn: float = 0.0
    s_tmin: float = 0.0
    s_tmax: float = float("inf")
    s_noise: float = 1.0
    s_cond: float = 0.0


def build_sigmas(
    num_steps: int, sigma_min: float, sigma_max: float, rho: float, device: torch.device | str | None = None
) -> Tensor:
    """σ_i = (σ_max^{1/ρ} + i/(n−1)·(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ, i = 0..n−1, then an appended 0."""
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    min_inv_rho, max_inv_rho = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    ramp = torch.linspace(0, 1, num_steps, device=device)  # n = 1 → [0] → σ_max
    sigmas = (max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** rho
    return torch.cat((sigmas, sigmas.new_zeros(1)))


# CS:GO play presets (spec §7.6): (dynamics sampler, upsampler sampler).
CSGO_FAST = (
    DiffusionSamplerConfig(num_steps_denoising=1, s_cond=0.005),
    DiffusionSamplerConfig(num_steps_denoising=1, sigma_min=1, sigma_max=5, order=2, s_churn=10, s_tmin=1, s_tmax=5, s_noise=0.9),
)
CSGO_HIGHER_QUALITY = (
    DiffusionSamplerConfig(num_steps_denoising=3, s_cond=0.005),
    DiffusionSamplerConfig(num_steps_denoising=10, sigma_min=1, sigma_max=5, order=1, s_churn=10, s_tmin=1, s_tmax=5, s_noise=0.9),
)


def csgo_sampler_configs(preset: str = "fast") -> tuple[DiffusionSamplerConfig, DiffusionSamplerConfig]:
    """(dynamics, upsampler) sampler configs of the CS:GO play presets ``fast`` or ``higher_quality``."""
    presets = {"fast": CSGO_FAST, "higher_quality": CSGO_HIGHER_QUALITY}
    if preset not in presets:
        raise ValueError(f"unknown CS:GO sampler preset {preset!r}; choose from {sorted(presets)}")
    return presets[preset]


class DiffusionSampler:
    def __init__(self, denoiser: Denoiser, cfg: DiffusionSamplerConfig | None = None) -> None:
        self.denoiser = denoiser
        self.cfg = cfg or DiffusionSamplerConfig()
        # Kept as Python floats: the loop branches on them, and no device sync is needed per step.
        self.sigmas = build_sigmas(self.cfg.num_steps_denoising, self.cfg.sigma_min, self.cfg.sigma_max, self.cfg.rho).tolist()

    @torch.no_grad()
    def sample(self, prev_obs: Tensor, prev_act: Tensor | None) -> tuple[Tensor, list[Tensor]]:
        """prev_obs (B, n, 3, H, W) conditioning frames (oldest first), prev_act (B, L) / (B, L, A) / None.

        Returns the generated frame (B, 3, H, W) (8-bit values in [−1, 1]) and the list of intermediate
        states, starting with the initial noise.
        """
        cfg = self.cfg
        b, t, c, h, w = prev_obs.shape
        prev_obs = prev_obs.reshape(b, t * c, h, w)
        n = len(self.sigmas) - 1
        gamma_max = min(cfg.s_churn / n, math.sqrt(2) - 1)
        x = torch.randn(b, c, h, w, device=prev_obs.device, dtype=prev_obs.dtype)  # unit variance (quirk)
        trajectory = [x]
        for sigma, next_sigma in zip(self.sigmas[:-1], self.sigmas[1:]):
            gamma = gamma_max if cfg.s_tmin <= sigma <= cfg.s_tmax else 0.0
            sigma_hat = sigma * (gamma + 1)
            if gamma > 0:
                x = x + torch.randn_like(x) * cfg.s_noise * math.sqrt(sigma_hat**2 - sigma**2)
            sigma_cond = None
            if cfg.s_cond > 0:
                sigma_cond = cfg.s_cond
                prev_obs = prev_obs + torch.randn_like(prev_obs) * cfg.s_cond  # accumulates (quirk)
            denoised = self.denoiser.denoise(x, sigma, prev_obs, prev_act, sigma_cond)  # at σ, not σ̂ (quirk)
            d = (x - denoised) / sigma_hat
            dt = next_sigma - sigma_hat
            if cfg.order == 1 or next_sigma == 0:
                x = x + d * dt  # Euler
            else:  # Heun
                x_2 = x + d * dt
                denoised_2 = self.denoiser.denoise(x_2, next_sigma, prev_obs, prev_act, sigma_cond)
                d_2 = (x_2 - denoised_2) / next_sigma
                x = x + (d + d_2) / 2 * dt
            trajectory.append(x)
        return x, trajectory
