"""The denoiser's network F: a conditioned 2-D U-Net and the "inner model" around it (spec §2.4, §7.3).

State-dict names follow the authors' layout (spec §2.5, Appendix B) so that published checkpoints load
strictly: ``noise_emb.weight``, ``act_emb.0.weight``, ``cond_proj.{0,2}``, ``conv_in``,
``unet.{d_blocks,u_blocks,mid_blocks,downsamples,upsamples}``, ``norm_out.norm``, ``conv_out``;
the CS:GO layout adds ``noise_cond_emb.weight``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from diamond_kedro.models.blocks import (
    Downsample,
    FourierFeatures,
    GroupNorm,
    ResBlocks,
    Upsample,
    conv3x3,
    conv_layout,
    silu_temp,
    time_layouts,
)


class UNet(nn.Module):
    """Encoder levels (down-sampler + ResBlocks), a 2-block attention middle, mirrored decoder with skips.

    ``downsamples[0]`` and ``upsamples[0]`` are identities (kept so indices match the checkpoints:
    ``downsamples.{1,2,3}``, ``upsamples.{1,2,3}``); ``u_blocks[0]`` is the deepest decoder level.
    """

    def __init__(self, cond_channels: int, depths: list[int], channels: list[int], attn_depths: list[bool]) -> None:
        super().__init__()
        if not len(depths) == len(channels) == len(attn_depths):
            raise ValueError(f"UNet: depths {depths}, channels {channels}, attn_depths {attn_depths} differ in length")
        self.num_down = len(channels) - 1

        d_blocks, u_blocks = [], []
        for i, n in enumerate(depths):
            c_prev, c = channels[max(0, i - 1)], channels[i]
            d_blocks.append(ResBlocks([c_prev] + [c] * (n - 1), [c] * n, cond_channels, bool(attn_depths[i])))
            # Decoder block i sees (x ++ skip) before each of its n + 1 ResBlocks; the last one also
            # consumes x_down of this level (c_prev channels) and returns c_prev channels.
            u_blocks.append(ResBlocks([2 * c] * n + [c_prev + c], [c] * n + [c_prev], cond_channels, bool(attn_depths[i])))
        self.d_blocks = nn.ModuleList(d_blocks)
        self.u_blocks = nn.ModuleList(reversed(u_blocks))
        self.mid_blocks = ResBlocks([channels[-1]] * 2, [channels[-1]] * 2, cond_channels, attn=True)
        self.downsamples = nn.ModuleList([nn.Identity()] + [Downsample(c) for c in channels[:-1]])
        self.upsamples = nn.ModuleList([nn.Identity()] + [Upsample(c) for c in reversed(channels[:-1])])

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        *_, h, w = x.shape
        m = 2**self.num_down  # pad right/bottom to a multiple of 2^(levels-1), crop back at the end
        pad_h, pad_w = math.ceil(h / m) * m - h, math.ceil(w / m) * m - w
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))

        skips: list[list[Tensor]] = []
        for block, down in zip(self.d_blocks, self.downsamples):
            x_down = down(x)
            x, outputs = block(x_down, cond)
            skips.append([x_down, *outputs])

        x, _ = self.mid_blocks(x, cond)

        # Deepest level first; within a level the skips are consumed last-saved first (x_down last).
        for block, up, level_skips in zip(self.u_blocks, self.upsamples, reversed(skips)):
            x, _ = block(up(x), cond, level_skips[::-1])

        if pad_h or pad_w:
            x = x[..., :h, :w]
        return x


@dataclass
class InnerModelConfig:
    """Defaults are the Atari denoiser (spec Appendix A); CS:GO values are in spec §7.3."""

    img_channels: int = 3
    num_steps_conditioning: int = 4
    cond_channels: int = 256
    depths: list[int] = field(default_factory=lambda: [2, 2, 2, 2])
    channels: list[int] = field(default_factory=lambda: [64, 64, 64, 64])
    attn_depths: list[bool] = field(default_factory=lambda: [False, False, False, False])
    num_actions: int | None = None
    # Upsampler (CS:GO): no action input, one extra conditioning image (the bicubic-upsampled low-res frame).
    is_upsampler: bool = False
    # CS:GO layout: a second Fourier embedding for the conditioning-frame noise level (``noise_cond_emb``).
    # Both CS:GO models have it (the upsampler always feeds it 0); Atari checkpoints do not.
    has_noise_cond_emb: bool = False


class InnerModel(nn.Module):
    """F(c_in·x̃, c_noise, conditioning frames / σ_data, actions) → output in "F-space" (spec §2.2)."""

    def __init__(self, cfg: InnerModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        L, cond = cfg.num_steps_conditioning, cfg.cond_channels
        self.noise_emb = FourierFeatures(cond)
        self.noise_cond_emb = FourierFeatures(cond) if cfg.has_noise_cond_emb else None
        if cfg.is_upsampler:
            self.act_emb = None
        else:
            if cfg.num_actions is None or cfg.num_actions < 1:
                raise ValueError(f"InnerModelConfig.num_actions must be a positive int, got {cfg.num_actions}")
            if cond % L != 0:
                raise ValueError(f"cond_channels {cond} not divisible by num_steps_conditioning {L}")
            # Sequential(Embedding, Flatten) only to keep the checkpoint key ``act_emb.0.weight``.
            self.act_emb = nn.Sequential(nn.Embedding(cfg.num_actions, cond // L), nn.Flatten())
        self.cond_proj = nn.Sequential(nn.Linear(cond, cond), nn.SiLU(), nn.Linear(cond, cond))
        num_cond_images = L + int(cfg.is_upsampler)
        self.conv_in = conv3x3((num_cond_images + 1) * cfg.img_channels, cfg.channels[0])
        self.unet = UNet(cond, cfg.depths, cfg.channels, cfg.attn_depths)
        self.norm_out = GroupNorm(cfg.channels[0])
        self.conv_out = conv3x3(cfg.channels[0], cfg.img_channels)
        nn.init.zeros_(self.conv_out.weight)

    def embed_actions(self, act: Tensor) -> Tensor:
        """(B, L) int actions → concatenated row lookups; (B, L, A) multi-hot → per-step sums of rows."""
        table = self.act_emb[0].weight
        if act.ndim == 2:
            return F.embedding(act, table).flatten(1)
        if act.ndim == 3 and act.size(2) == table.size(0):
            return (act.to(table.dtype) @ table).flatten(1)
        raise ValueError(
            f"actions must be (B, L) int or (B, L, {table.size(0)}) multi-hot, got shape {tuple(act.shape)}"
        )

    def forward(
        self,
        noisy_next_obs: Tensor,
        c_noise: Tensor,
        obs: Tensor,
        act: Tensor | None,
        c_noise_cond: Tensor | None = None,
    ) -> Tensor:
        """noisy_next_obs (B,C,H,W) already × c_in; c_noise (B,); obs (B, n·C, H, W) already / σ_data."""
        cond = self.noise_emb(c_noise)
        if self.noise_cond_emb is not None:
            # Faithful: without conditioning noise the embedding still receives 0 (→ [1…1, 0…0]).
            cond = cond + self.noise_cond_emb(c_noise_cond if c_noise_cond is not None else torch.zeros_like(c_noise))
        elif c_noise_cond is not None:
            raise ValueError("c_noise_cond given but this model has no noise_cond_emb (has_noise_cond_emb=False)")
        if self.act_emb is not None:
            if act is None:
                raise ValueError("this model needs actions (it is not an upsampler)")
            cond = cond + self.embed_actions(act)
        elif act is not None:
            raise ValueError("the upsampler takes no actions; pass act=None")
        cond = self.cond_proj(cond)
        x = self.conv_in(conv_layout(torch.cat((obs, noisy_next_obs), dim=1), probe_conv_layouts))
        x = self.unet(x, cond)
        # Back to the default layout: callers get an ordinary contiguous (B, C, H, W) tensor.
        return self.conv_out(silu_temp(self.norm_out(x))).contiguous()


def probe_network(batch: int = 2):
    """The paper-size denoiser network (64 channels, 4 levels) and a batch of inputs for it, seeded: what
    the per-machine probes time (``probe_conv_layouts`` here, ``utils.precision.probe_precision``, which is
    handed this function at run start because utils/ does not import models/).
    Returns ``net`` and a function running one forward + backward."""
    gen = torch.Generator().manual_seed(0)
    net = InnerModel(InnerModelConfig(num_actions=4))
    with torch.no_grad():  # zero-initialised output convs would leave part of the backward trivial
        for p in net.parameters():
            if p.ndim > 1 and not p.any():
                p.normal_(0, 0.02, generator=gen)
    noisy, obs = torch.randn(batch, 3, 64, 64, generator=gen), torch.randn(batch, 12, 64, 64, generator=gen)
    act, c_noise = torch.randint(0, 4, (batch, 4), generator=gen), torch.zeros(batch)

    def fwd_bwd() -> None:
        net(noisy, c_noise, obs, act).float().square().mean().backward()

    return net, fwd_bwd


def probe_conv_layouts(repeats: int = 3) -> dict[str, float]:
    """Best-of-``repeats`` seconds of a forward + backward of the paper-size denoiser network (64
    channels, 4 levels) on 2 frames, in each layout (``blocks.time_layouts``). About 2-3 seconds on 2
    cores, once per machine (the result is cached): the layout probe of ``blocks.conv_layout`` for the
    denoiser and the actor-critic alike."""
    _, fwd_bwd = probe_network()
    return time_layouts(fwd_bwd, repeats)
