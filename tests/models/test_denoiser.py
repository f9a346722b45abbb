import math
import time

import pytest
import torch

from diamond_kedro.models.denoiser import Denoiser, DenoiserConfig, quantize_8bit
from diamond_kedro.models.unet import InnerModelConfig
from diamond_kedro.replay.batch import Batch

from ..model_helpers import randomize_zero_inits

torch.set_num_threads(1)


def tiny_denoiser(num_actions=4, **kw) -> Denoiser:
    inner = dict(num_actions=num_actions, cond_channels=16, channels=[8, 8, 8, 8], depths=[1, 1, 1, 1])
    inner.update(kw.pop("inner", {}))
    return Denoiser(DenoiserConfig(inner_model=InnerModelConfig(**inner), **kw))


def make_batch(b, s, h, w, num_actions=4, seed=0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    return Batch.of(torch.rand(b, s, 3, h, w, generator=g) * 2 - 1, torch.randint(0, num_actions, (b, s), generator=g))


def hand_conditioners(sigma, sigma_offset=0.3, sigma_data=0.5):
    se = math.sqrt(sigma**2 + sigma_offset**2)
    return (
        1 / math.sqrt(se**2 + sigma_data**2),  # c_in
        se * sigma_data / math.sqrt(se**2 + sigma_data**2),  # c_out
        sigma_data**2 / (se**2 + sigma_data**2),  # c_skip
        math.log(se) / 4,  # c_noise
    )


@pytest.mark.parametrize("sigma", [5.0, 0.5, 0.01])
def test_conditioners_by_hand(sigma):
    cs = tiny_denoiser().conditioners(torch.tensor([sigma], dtype=torch.float64))
    for got, want in zip(cs, hand_conditioners(sigma)):
        assert got.item() == pytest.approx(want, rel=1e-12)


def test_conditioners_reference_table():
    # spec §2.2: σ, c_in, c_skip, c_out, c_noise (Atari, σ_offset 0.3)
    table = [
        (0.002, 1.7150, 0.7353, 0.2573, -0.3010),
        (0.28308, 1.5428, 0.5950, 0.3182, -0.2214),
        (1.0, 0.8639, 0.1866, 0.4510, 0.0108),
        (5.0, 0.1987, 0.0099, 0.4975, 0.4028),
    ]
    d = tiny_denoiser()
    for sigma, c_in, c_skip, c_out, c_noise in table:
        cs = d.conditioners(torch.tensor(sigma, dtype=torch.float64))
        assert cs.c_in.item() == pytest.approx(c_in, abs=6e-5)
        assert cs.c_skip.item() == pytest.approx(c_skip, abs=6e-5)
        assert cs.c_out.item() == pytest.approx(c_out, abs=6e-5)
        assert cs.c_noise.item() == pytest.approx(c_noise, abs=6e-5)


def test_quantize_8bit_truncates():
    x = torch.tensor([-2.0, -1.0, 1.0, 3.0, 0.0, 2 * (100.7 / 255) - 1])
    q = quantize_8bit(x.clone())
    # clamp → [0,255] → floor: -1→0, 1→255, 0→127.5→127, 100.7→100
    expected = torch.tensor([0, 0, 255, 255, 127, 100], dtype=torch.float32) / 255 * 2 - 1
    torch.testing.assert_close(q, expected)


def test_denoise_shapes_and_8bit_output():
    torch.manual_seed(0)
    d = tiny_denoiser()
    for h, w in [(64, 64), (30, 56)]:
        out = d.denoise(torch.randn(2, 3, h, w), 1.0, torch.rand(2, 4, 3, h, w) * 2 - 1, torch.randint(0, 4, (2, 4)))
        assert out.shape == (2, 3, h, w)
        levels = (out + 1) / 2 * 255
        torch.testing.assert_close(levels, levels.round(), atol=1e-4, rtol=0)


def test_single_step_loss_by_hand():
    """With F ≡ 0 the loss is the mean of the regression target² = ((x0 − c_skip x̃)/c_out)²."""
    torch.manual_seed(0)
    d = tiny_denoiser(num_autoregressive_steps=0)
    torch.nn.init.zeros_(d.inner_model.conv_out.bias)  # weight is already zero → F = 0
    batch = make_batch(3, 5, 8, 8)
    torch.manual_seed(123)
    loss, _ = d.compute_loss(batch)
    # Replay the random draws: σ (B,), offset noise (B,C,1,1), per-pixel noise.
    torch.manual_seed(123)
    sigma = (torch.randn(3) * 1.2 - 0.4).exp().clip(0.002, 20)
    offset = 0.3 * torch.randn(3, 3, 1, 1)
    x0 = batch.obs[:, 4]
    noisy = x0 + offset + torch.randn_like(x0) * sigma[:, None, None, None]
    expected = 0.0
    for i in range(3):
        _, c_out, c_skip, _ = hand_conditioners(sigma[i].item())
        expected += (((x0[i] - c_skip * noisy[i]) / c_out) ** 2).mean().item() / 3
    assert loss.item() == pytest.approx(expected, rel=1e-4)


def test_padded_targets_are_masked_but_padded_context_is_not():
    torch.manual_seed(0)
    d = tiny_denoiser()
    randomize_zero_inits(d)
    batch = make_batch(4, 6, 8, 8)
    batch.mask_padding[1, 5] = False  # second prediction step of sample 1 has a padded target
    torch.manual_seed(7)
    loss_a, _ = d.compute_loss(batch)
    batch.obs[1, 5] = torch.rand(3, 8, 8)  # change the masked target only
    torch.manual_seed(7)
    loss_b, _ = d.compute_loss(batch)
    assert loss_a.item() == pytest.approx(loss_b.item(), rel=1e-6)
    batch.obs[1, 0] = torch.rand(3, 8, 8)  # a conditioning frame is never masked
    torch.manual_seed(7)
    loss_c, _ = d.compute_loss(batch)
    assert abs(loss_c.item() - loss_a.item()) > 1e-6


def test_second_step_is_conditioned_on_quantised_estimate():
    torch.manual_seed(0)
    d = tiny_denoiser()
    randomize_zero_inits(d)
    calls = []
    orig = d.inner_model.forward

    def spy(noisy_scaled, c_noise, obs, act, c_noise_cond=None):
        out = orig(noisy_scaled, c_noise, obs, act, c_noise_cond)
        calls.append((noisy_scaled.detach().clone(), c_noise.detach().clone(), obs.detach().clone(), out.detach().clone()))
        return out

    d.inner_model.forward = spy
    batch = make_batch(2, 6, 8, 8)
    obs_before = batch.obs.clone()
    d.compute_loss(batch)
    assert torch.equal(batch.obs, obs_before)  # the caller's batch is untouched
    assert len(calls) == 2
    noisy_scaled, c_noise, _, f0 = calls[0]
    sigma_e = torch.exp(4 * c_noise)  # c_noise = ln(σ_e)/4
    c_in = 1 / torch.sqrt(sigma_e**2 + 0.25)
    c_skip = 0.25 / (sigma_e**2 + 0.25)
    c_out = sigma_e * 0.5 / torch.sqrt(sigma_e**2 + 0.25)
    noisy = noisy_scaled / c_in[:, None, None, None]
    D = c_skip[:, None, None, None] * noisy + c_out[:, None, None, None] * f0
    D = torch.floor((D.clamp(-1, 1) + 1) / 2 * 255) / 255 * 2 - 1
    context_frame = calls[1][2][:, 9:12] * 0.5  # 4th conditioning frame of step 1, undo /σ_data
    torch.testing.assert_close(context_frame, D, atol=2e-5, rtol=0)
    torch.testing.assert_close(calls[1][2][:, :9] * 0.5, batch.obs[:, 1:4].reshape(2, 9, 8, 8))


def test_multi_hot_actions_sum_rows():
    torch.manual_seed(0)
    d = tiny_denoiser(num_actions=6)
    table = d.inner_model.act_emb[0].weight
    multi = torch.zeros(2, 4, 6)
    multi[0, 0, [1, 3]] = 1
    multi[1, 2, 5] = 1
    emb = d.inner_model.embed_actions(multi).view(2, 4, 4)
    torch.testing.assert_close(emb[0, 0], table[1] + table[3])
    torch.testing.assert_close(emb[1, 2], table[5])
    assert torch.all(emb[0, 1] == 0)
    one_hot = torch.nn.functional.one_hot(torch.tensor([[1, 2, 3, 4]]), 6).float()
    torch.testing.assert_close(d.inner_model.embed_actions(one_hot), d.inner_model.embed_actions(torch.tensor([[1, 2, 3, 4]])))


def test_noise_cond_embedding_receives_zero_without_cond_noise():
    torch.manual_seed(0)
    d = tiny_denoiser(inner={"has_noise_cond_emb": True}, noise_previous_obs=True, sigma_offset_noise=0.1)
    x, obs, act = torch.randn(2, 3, 8, 8), torch.rand(2, 4, 3, 8, 8), torch.randint(0, 4, (2, 4))
    randomize_zero_inits(d)
    a = d.denoise(x, 1.0, obs, act)
    # σ_cond = 1 → c_noise_cond = ln(1)/4 = 0: same as "no conditioning noise"
    b = d.denoise(x, 1.0, obs, act, sigma_cond=1.0)
    c = d.denoise(x, 1.0, obs, act, sigma_cond=0.005)
    assert torch.equal(a, b) and not torch.equal(a, c)
    loss, _ = d.compute_loss(make_batch(2, 6, 8, 8))  # noise augmentation path runs
    assert torch.isfinite(loss)


def test_upsampler_shapes_at_full_resolution():
    torch.manual_seed(0)
    inner = dict(num_steps_conditioning=1, is_upsampler=True, has_noise_cond_emb=True, num_actions=None)
    up = tiny_denoiser(inner=inner, upsampling_factor=5, sigma_offset_noise=0.1)
    assert up.inner_model.conv_in.in_channels == 9 and up.inner_model.act_emb is None
    full = make_batch(2, 3, 150, 280)
    low = torch.rand(2, 3, 3, 30, 56) * 2 - 1
    loss, m = up.compute_loss(full, low)
    loss.backward()
    assert math.isfinite(m["loss_denoising"])
    cond = torch.stack((full.obs[:, 0], torch.nn.functional.interpolate(low[:, 1], scale_factor=5, mode="bicubic")), 1)
    out = up.denoise(torch.randn(2, 3, 150, 280), 5.0, cond, None)
    assert out.shape == (2, 3, 150, 280)
    with pytest.raises(ValueError):
        up.compute_loss(full)


def param_count(m):
    return sum(p.numel() for p in m.parameters())


def test_parameter_counts():
    assert param_count(Denoiser(DenoiserConfig(inner_model=InnerModelConfig(num_actions=18)))) == 4_406_851
    assert param_count(Denoiser(DenoiserConfig(inner_model=InnerModelConfig(num_actions=3)))) == 4_405_891
    with torch.device("meta"):
        dyn = Denoiser(
            DenoiserConfig(
                inner_model=InnerModelConfig(
                    num_actions=51, cond_channels=2048, channels=[128, 256, 512, 1024], attn_depths=[0, 0, 1, 1],
                    has_noise_cond_emb=True,
                ),
                sigma_offset_noise=0.1, noise_previous_obs=True, num_autoregressive_steps=4,
            )
        )
        up = Denoiser(
            DenoiserConfig(
                inner_model=InnerModelConfig(
                    num_steps_conditioning=1, cond_channels=2048, channels=[64, 64, 128, 256], attn_depths=[0, 0, 0, 1],
                    is_upsampler=True, has_noise_cond_emb=True,
                ),
                sigma_offset_noise=0.1, upsampling_factor=5,
            )
        )
    assert param_count(dyn) == 330_489_219
    assert param_count(up) == 51_149_187
    sd = dyn.state_dict()
    assert sd["inner_model.noise_cond_emb.weight"].shape == (1, 1024)
    assert sd["inner_model.act_emb.0.weight"].shape == (51, 512)
    assert not any(k.startswith("inner_model.act_emb") for k in up.state_dict())


def test_state_dict_names_and_shapes():
    sd = Denoiser(DenoiserConfig(inner_model=InnerModelConfig(num_actions=18))).state_dict()
    p = "inner_model."
    expect = {
        "noise_emb.weight": (1, 128),
        "act_emb.0.weight": (18, 64),
        "cond_proj.0.weight": (256, 256),
        "cond_proj.2.bias": (256,),
        "conv_in.weight": (64, 15, 3, 3),
        "unet.d_blocks.0.resblocks.0.norm1.linear.weight": (128, 256),
        "unet.d_blocks.3.resblocks.1.conv2.weight": (64, 64, 3, 3),
        "unet.u_blocks.0.resblocks.2.proj.weight": (64, 128, 1, 1),  # decoder inputs are concatenations
        "unet.u_blocks.0.resblocks.0.norm1.linear.weight": (256, 256),
        "unet.u_blocks.3.resblocks.2.conv1.weight": (64, 128, 3, 3),
        "unet.mid_blocks.resblocks.1.attn.norm.norm.weight": (64,),
        "unet.mid_blocks.resblocks.0.attn.qkv_proj.weight": (192, 64, 1, 1),
        "unet.mid_blocks.resblocks.0.attn.out_proj.bias": (64,),
        "unet.downsamples.3.conv.weight": (64, 64, 3, 3),
        "unet.upsamples.1.conv.bias": (64,),
        "norm_out.norm.weight": (64,),
        "conv_out.weight": (3, 64, 3, 3),
    }
    for k, shape in expect.items():
        assert tuple(sd[p + k].shape) == shape, k
    assert not any(".downsamples.0." in k or ".upsamples.0." in k or "noise_cond_emb" in k for k in sd)
    assert not any(k.startswith(p + "unet.d_blocks.0.resblocks.0.proj") for k in sd)
    # 12 (embeddings, cond_proj, conv_in, norm_out, conv_out) + 8 encoder blocks × 8 + 12 decoder blocks
    # × 10 (all have proj) + 2 mid blocks × (8 + 6 attention) + 3 down + 3 up convs × 2 = 236
    assert len(sd) == 12 + 8 * 8 + 12 * 10 + 2 * 14 + 6 * 2


def test_tiny_world_model_overfits():
    torch.manual_seed(0)
    d = Denoiser(
        DenoiserConfig(inner_model=InnerModelConfig(num_actions=3, cond_channels=32, channels=[16, 16], depths=[1, 1], attn_depths=[0, 0]))
    )
    batch = make_batch(4, 6, 16, 16, num_actions=3)
    opt = torch.optim.Adam(d.parameters(), lr=3e-3)
    t0, losses = time.perf_counter(), []
    for _ in range(150):
        opt.zero_grad()
        loss, _ = d.compute_loss(batch)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < first / 3, (first, last)
    assert time.perf_counter() - t0 < 60
