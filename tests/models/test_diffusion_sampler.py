import math

import pytest
import torch

from diamond_kedro.models.denoiser import Denoiser, DenoiserConfig
from diamond_kedro.models.diffusion_sampler import (
    DiffusionSampler,
    DiffusionSamplerConfig,
    build_sigmas,
    csgo_sampler_configs,
)
from diamond_kedro.models.unet import InnerModelConfig

torch.set_num_threads(1)


def test_atari_schedule():
    s = build_sigmas(3, 0.002, 5.0, 7).tolist()
    mid = (5.0 ** (1 / 7) + 0.5 * (0.002 ** (1 / 7) - 5.0 ** (1 / 7))) ** 7  # i = 1 of n = 3, by hand
    assert s == pytest.approx([5.0, mid, 0.002, 0.0], rel=1e-5)
    assert s == pytest.approx([5.0, 0.28308, 0.002, 0.0], rel=2e-5)
    assert build_sigmas(1, 0.002, 5.0, 7).tolist() == pytest.approx([5.0, 0.0])


def test_upsampler_schedule():
    s = build_sigmas(10, 1.0, 5.0, 7).tolist()
    ref = [5.0, 4.254, 3.605, 3.043, 2.558, 2.141, 1.784, 1.478, 1.219, 1.0, 0.0]
    assert s == pytest.approx(ref, abs=6e-4)


class GaussianDenoiser:
    """Exact posterior mean for data x0 ~ N(mu, s²) per pixel: D(x, σ) = mu + s²/(s²+σ²)(x − mu).
    Records every call so the sampler's evaluation points can be checked."""

    def __init__(self, mu: torch.Tensor, s: float) -> None:
        self.mu, self.s, self.calls = mu, s, []

    def denoise(self, x, sigma, prev_obs, prev_act, sigma_cond=None):
        self.calls.append((float(sigma), prev_obs.clone(), sigma_cond))
        return self.mu + self.s**2 / (self.s**2 + float(sigma) ** 2) * (x - self.mu)


def test_euler_on_single_image_data_recovers_it():
    x0 = torch.rand(2, 3, 8, 8) * 2 - 1
    den = GaussianDenoiser(x0, 0.0)  # s = 0: data is the single image x0, D(x, σ) = x0
    out, traj = DiffusionSampler(den, DiffusionSamplerConfig()).sample(torch.zeros(2, 4, 3, 8, 8), None)
    torch.testing.assert_close(out, x0)
    assert len(traj) == 4 and [c[0] for c in den.calls] == pytest.approx([5.0, 0.28308, 0.002], rel=2e-5)


def test_euler_on_gaussian_data_matches_closed_form():
    torch.manual_seed(0)
    mu, s = torch.full((1, 3, 4, 4), 0.2), 0.5
    den = GaussianDenoiser(mu, s)
    torch.manual_seed(1)
    out, traj = DiffusionSampler(den, DiffusionSamplerConfig()).sample(torch.zeros(1, 4, 3, 4, 4), None)
    torch.manual_seed(1)
    x_init = torch.randn(1, 3, 4, 4)  # unit variance, not σ_max (quirk)
    torch.testing.assert_close(traj[0], x_init)
    # Each Euler step is linear in (x − mu): x' − mu = (x − mu)(1 + (1 − k)(σ' − σ)/σ), k = s²/(s²+σ²)
    sig = [5.0, 0.28308, 0.002, 0.0]
    factor = 1.0
    for a, b in zip(sig[:-1], sig[1:]):
        k = s**2 / (s**2 + a**2)
        factor *= 1 + (1 - k) * (b - a) / a
    torch.testing.assert_close(out, mu + factor * (x_init - mu), atol=1e-4, rtol=1e-3)


def test_heun_matches_closed_form():
    mu, s = torch.zeros(1, 3, 4, 4), 1.0
    den = GaussianDenoiser(mu, s)
    cfg = DiffusionSamplerConfig(num_steps_denoising=2, sigma_min=1.0, sigma_max=2.0, order=2)
    torch.manual_seed(3)
    out, _ = DiffusionSampler(den, cfg).sample(torch.zeros(1, 4, 3, 4, 4), None)
    torch.manual_seed(3)
    x = torch.randn(1, 3, 4, 4)
    # step 2 → 1 with Heun, then 1 → 0 with Euler (last step is always Euler): output = D(x, 1)
    a, b = 2.0, 1.0
    d = (x - s**2 / (s**2 + a**2) * x) / a
    x2 = x + d * (b - a)
    d2 = (x2 - s**2 / (s**2 + b**2) * x2) / b
    x = x + (d + d2) / 2 * (b - a)
    torch.testing.assert_close(out, s**2 / (s**2 + 1.0) * x, atol=1e-5, rtol=1e-5)
    assert [c[0] for c in den.calls] == pytest.approx([2.0, 1.0, 1.0])


def test_churn_evaluates_at_sigma_and_s_cond_accumulates():
    fast_dyn, fast_up = csgo_sampler_configs("fast")
    hq_dyn, hq_up = csgo_sampler_configs("higher_quality")
    assert (fast_dyn.num_steps_denoising, fast_up.num_steps_denoising, hq_dyn.num_steps_denoising, hq_up.num_steps_denoising) == (1, 1, 3, 10)
    assert hq_up.s_churn == 10 and hq_up.s_noise == 0.9 and hq_dyn.s_cond == 0.005

    den = GaussianDenoiser(torch.zeros(1, 3, 4, 4), 1.0)
    DiffusionSampler(den, hq_up).sample(torch.zeros(1, 2, 3, 4, 4), None)
    # γ = min(10/10, √2 − 1) > 0 at every level, yet the model is queried at σ itself (not σ(1+γ))
    assert [c[0] for c in den.calls] == pytest.approx(build_sigmas(10, 1.0, 5.0, 7)[:-1].tolist())

    den = GaussianDenoiser(torch.zeros(1, 3, 16, 16), 1.0)
    prev = torch.zeros(4, 4, 3, 16, 16)
    DiffusionSampler(den, hq_dyn).sample(prev, None)
    assert torch.all(prev == 0)  # the caller's buffer is never corrupted
    seen = [c[1] for c in den.calls]
    assert all(c[2] == 0.005 for c in den.calls)
    # re-noising accumulates: after k calls the corruption has std 0.005·sqrt(k)
    for k, p in enumerate(seen, start=1):
        assert p.std().item() == pytest.approx(0.005 * math.sqrt(k), rel=0.05)


def test_sampler_with_real_denoiser_gives_8bit_frames():
    torch.manual_seed(0)
    d = Denoiser(DenoiserConfig(inner_model=InnerModelConfig(num_actions=3, cond_channels=16, channels=[8, 8], depths=[1, 1], attn_depths=[0, 0])))
    out, traj = DiffusionSampler(d).sample(torch.rand(2, 4, 3, 30, 56) * 2 - 1, torch.randint(0, 3, (2, 4)))
    assert out.shape == (2, 3, 30, 56) and len(traj) == 4
    levels = (out + 1) / 2 * 255
    torch.testing.assert_close(levels, levels.round(), atol=1e-4, rtol=0)
