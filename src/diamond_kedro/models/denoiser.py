"""EDM denoiser of the next frame, with DIAMOND's effective-σ preconditioning (spec §2.2, §2.3, §3.3, §7.3).

    σ_e    = sqrt(σ² + σ_offset²)
    c_in   = 1 / sqrt(σ_e² + σ_data²)
    c_skip = σ_data² / (σ_e² + σ_data²)
    c_out  = σ_e · σ_data / sqrt(σ_e² + σ_data²)
    c_noise = ln(σ_e) / 4
    D(x̃) = c_skip · x̃ + c_out · F(c_in · x̃, c_noise, prev_obs / σ_data, prev_act)

Training regresses F onto (x⁰ − c_skip·x̃) / c_out over several autoregressive prediction steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from diamond_kedro.models.unet import InnerModel, InnerModelConfig
from diamond_kedro.replay.batch import Batch


@dataclass
class SigmaDistributionConfig:
    """Training noise levels: σ = clip(exp(N(loc, scale²)), sigma_min, sigma_max). CS:GO uses loc −1.2."""

    loc: float = -0.4
    scale: float = 1.2
    sigma_min: float = 0.002
    sigma_max: float = 20.0


@dataclass
class DenoiserConfig:
    inner_model: InnerModelConfig = field(default_factory=InnerModelConfig)
    sigma_data: float = 0.5
    sigma_offset_noise: float = 0.3
    num_autoregressive_steps: int = 1
    noise_previous_obs: bool = False  # CS:GO dynamics: noise-augment the conditioning frames in training
    upsampling_factor: int | None = None  # CS:GO upsampler: 5
    sigma_distribution: SigmaDistributionConfig = field(default_factory=SigmaDistributionConfig)


class Conditioners(NamedTuple):
    c_in: Tensor
    c_out: Tensor
    c_skip: Tensor
    c_noise: Tensor


def _bcast(c: Tensor) -> Tensor:
    """(B,) or () → (B or 1, 1, 1, 1) to scale images."""
    return c.reshape(-1, 1, 1, 1)


def _levels(sigma: Tensor | float, like: Tensor) -> Tensor:
    """(B,) noise levels for a batch like ``like``; a Python float becomes a fill on the device (no copy from
    the host, which from pageable memory would block)."""
    b = like.size(0)
    if isinstance(sigma, Tensor):
        return sigma.to(device=like.device, dtype=like.dtype).expand(b)
    return torch.full((b,), float(sigma), dtype=like.dtype, device=like.device)


def quantize_8bit(x: Tensor) -> Tensor:
    """Clamp to [−1, 1], map to [0, 255], truncate to an integer, map back (spec §3.3). In place on x.

    Same operation order as the authors' (add 1, /2, ×255, truncate, /255, ×2, −1) so that the floor
    lands on the same integer; floor equals truncation because the values are ≥ 0.
    """
    return x.clamp_(-1, 1).add_(1).div_(2).mul_(255).floor_().div_(255).mul_(2).sub_(1)


class Denoiser(nn.Module):
    """Next-frame denoiser. In upsampler mode (``cfg.upsampling_factor``) it generates a full-resolution
    frame conditioned on the previous full-resolution frame and the bicubic-upsampled low-res frame."""

    def __init__(self, cfg: DenoiserConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.is_upsampler = cfg.upsampling_factor is not None
        if self.is_upsampler != cfg.inner_model.is_upsampler:
            raise ValueError(
                f"DenoiserConfig.upsampling_factor={cfg.upsampling_factor} but "
                f"inner_model.is_upsampler={cfg.inner_model.is_upsampler}; set both or neither"
            )
        if cfg.noise_previous_obs and not cfg.inner_model.has_noise_cond_emb:
            raise ValueError("noise_previous_obs=True needs inner_model.has_noise_cond_emb=True")
        self.inner_model = InnerModel(cfg.inner_model)

    @property
    def device(self) -> torch.device:
        return self.inner_model.noise_emb.weight.device

    @property
    def num_steps_conditioning(self) -> int:
        return self.cfg.inner_model.num_steps_conditioning

    # ----- preconditioning -------------------------------------------------------------------------

    def conditioners(self, sigma: Tensor) -> Conditioners:
        """The four EDM preconditioners at nominal noise level ``sigma`` (same shape as ``sigma``)."""
        sigma_data, sigma_offset = self.cfg.sigma_data, self.cfg.sigma_offset_noise
        sigma_e = (sigma**2 + sigma_offset**2).sqrt()  # offset noise adds variance σ_offset²
        c_in = 1 / (sigma_e**2 + sigma_data**2).sqrt()
        c_skip = sigma_data**2 / (sigma_e**2 + sigma_data**2)
        c_out = sigma_e * sigma_data / (sigma_e**2 + sigma_data**2).sqrt()
        c_noise = sigma_e.log() / 4
        return Conditioners(c_in, c_out, c_skip, c_noise)

    def sample_sigma(self, n: int, device: torch.device | None = None) -> Tensor:
        d = self.cfg.sigma_distribution
        s = torch.randn(n, device=device or self.device) * d.scale + d.loc
        return s.exp().clip(d.sigma_min, d.sigma_max)

    @staticmethod
    def apply_noise(x: Tensor, sigma: Tensor, sigma_offset_noise: float) -> Tensor:
        """x + σ_offset·ε_off + σ·ε with ε_off of shape (B, C, 1, 1): one offset per image channel."""
        b, c = x.shape[:2]
        offset = sigma_offset_noise * torch.randn(b, c, 1, 1, device=x.device, dtype=x.dtype)
        return x + offset + torch.randn_like(x) * _bcast(sigma)

    def _model_output(
        self, noisy: Tensor, cs: Conditioners, prev_obs: Tensor, prev_act: Tensor | None, c_noise_cond: Tensor | None
    ) -> Tensor:
        return self.inner_model(
            noisy * _bcast(cs.c_in), cs.c_noise.reshape(-1), prev_obs / self.cfg.sigma_data, prev_act, c_noise_cond
        )

    @staticmethod
    def _wrap(noisy: Tensor, model_output: Tensor, cs: Conditioners) -> Tensor:
        """D = c_skip·x̃ + c_out·F, quantised to 8 bits (no gradient)."""
        with torch.no_grad():
            d = _bcast(cs.c_skip) * noisy + _bcast(cs.c_out) * model_output
            return quantize_8bit(d)

    def _flat_prev_obs(self, prev_obs: Tensor) -> Tensor:
        return prev_obs.flatten(1, 2) if prev_obs.ndim == 5 else prev_obs

    @torch.no_grad()
    def denoise(
        self,
        noisy_next_obs: Tensor,
        sigma: Tensor | float,
        prev_obs: Tensor,
        prev_act: Tensor | None,
        sigma_cond: Tensor | float | None = None,
    ) -> Tensor:
        """8-bit-quantised D(x̃, σ) (used at sampling).

        noisy_next_obs (B,3,H,W); sigma scalar or (B,); prev_obs (B,n,3,H,W) or (B,n·3,H,W) — for the
        upsampler n = 2: [previous full-res frame, bicubic-upsampled current low-res frame];
        prev_act (B,L) int / (B,L,A) multi-hot / None (upsampler); sigma_cond: noise level already applied
        to prev_obs (CS:GO ``s_cond``), or None.
        """
        sigma = _levels(sigma, noisy_next_obs)
        cs = self.conditioners(sigma)
        c_noise_cond = None
        if sigma_cond is not None:
            c_noise_cond = _levels(sigma_cond, noisy_next_obs).log() / 4
        model_output = self._model_output(noisy_next_obs, cs, self._flat_prev_obs(prev_obs), prev_act, c_noise_cond)
        return self._wrap(noisy_next_obs, model_output, cs)

    # ----- training --------------------------------------------------------------------------------

    def compute_loss(self, batch: Batch, low_res_obs: Tensor | None = None) -> tuple[Tensor, dict[str, float]]:
        """Multi-step denoising loss (spec §2.3).

        Dynamics model: ``batch.obs`` (B, S, 3, H, W) with S = L + 1 + num_autoregressive_steps.
        Upsampler: ``batch.obs`` holds the *full-resolution* frames (B, S, 3, H, W), S = 1 + 1 + n_ar,
        and ``low_res_obs`` the matching low-resolution frames (B, S, 3, H/f, W/f); the low-res frame of
        each target step, bicubic-upsampled ×f, is appended to the conditioning (spec §7.3).

        Step i: context = frames i..i+L−1 (frames predicted at earlier steps replaced by the model's own
        one-shot 8-bit estimate, without gradient), target = real frame i+L with fresh σ and noise; the
        MSE is taken over batch elements whose target frame is real (``mask_padding``). Loss = mean over
        the steps. A step with no real target contributes 0 (the authors' code would give NaN).
        """
        n = self.num_steps_conditioning
        b, t, c, h, w = batch.obs.shape
        num_steps = t - n
        if num_steps < 1:
            raise ValueError(f"Denoiser.compute_loss: sequence length {t} must exceed num_steps_conditioning {n}")
        if self.is_upsampler:
            if low_res_obs is None:
                raise ValueError("upsampler compute_loss needs low_res_obs (B, S, 3, h, w)")
            f = self.cfg.upsampling_factor
            if low_res_obs.shape[:3] != (b, t, c) or low_res_obs.shape[3] * f != h or low_res_obs.shape[4] * f != w:
                raise ValueError(
                    f"low_res_obs shape {tuple(low_res_obs.shape)} does not match obs {tuple(batch.obs.shape)} "
                    f"with upsampling factor {f}"
                )
            # Only target steps need their low-res frame; bicubic is per-frame so this equals upsampling all.
            low_res_up = F.interpolate(
                low_res_obs[:, n:].flatten(0, 1), scale_factor=f, mode="bicubic"
            ).view(b, num_steps, c, h, w)
        elif low_res_obs is not None:
            raise ValueError("low_res_obs is only for the upsampler (upsampling_factor is None)")

        # Working copy only when earlier predictions will be substituted into the sequence.
        all_obs = batch.obs.clone() if num_steps > 1 else batch.obs
        loss = batch.obs.new_zeros(())
        for i in range(num_steps):
            prev_obs = all_obs[:, i : n + i].reshape(b, n * c, h, w)
            prev_act = None if self.is_upsampler else batch.act[:, i : n + i]
            next_obs = all_obs[:, n + i]
            mask = batch.mask_padding[:, n + i].to(next_obs.dtype)

            c_noise_cond = None
            if self.cfg.noise_previous_obs:
                sigma_cond = self.sample_sigma(b, next_obs.device)
                prev_obs = self.apply_noise(prev_obs, sigma_cond, self.cfg.sigma_offset_noise)
                c_noise_cond = sigma_cond.log() / 4
            if self.is_upsampler:
                prev_obs = torch.cat((prev_obs, low_res_up[:, i]), dim=1)

            sigma = self.sample_sigma(b, next_obs.device)
            noisy = self.apply_noise(next_obs, sigma, self.cfg.sigma_offset_noise)
            cs = self.conditioners(sigma)
            model_output = self._model_output(noisy, cs, prev_obs, prev_act, c_noise_cond)

            target = (next_obs - _bcast(cs.c_skip) * noisy) / _bcast(cs.c_out)
            per_sample = (model_output - target).square().flatten(1).mean(1)
            # = MSE over the elements of the real-target samples (all samples have equally many elements).
            loss = loss + (per_sample * mask).sum() / mask.sum().clamp(min=1)

            if i + 1 < num_steps:
                all_obs[:, n + i] = self._wrap(noisy, model_output.detach(), cs)

        loss = loss / num_steps
        # a tensor, not a float: reading it here would stall the GPU every step (MetricAccumulator reads
        # the sums once per phase)
        return loss, {"loss_denoising": loss.detach()}
