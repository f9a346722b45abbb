"""Building blocks shared by the denoiser, the reward/termination model and the actor-critic (spec §2.4).

Every module here reproduces the authors' computation (same parameter names, same initialisation) so
that their checkpoints load strictly and give the same outputs. Where a step can be done in place on a
tensor that nothing else holds, it is, because on CPU the allocator, not the arithmetic, is often the
bottleneck for these 33 MB activations (BASELINES.md).
"""

from __future__ import annotations

import math
import os
import time
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from diamond_kedro.utils import layout_probe

GN_GROUP_SIZE = 32
GN_EPS = 1e-5
ATTN_HEAD_DIM = 8


def sample_categorical(logits: Tensor) -> Tensor:
    """One draw per row of ``softmax(logits)`` over the last dimension, without a host-device sync.

    Exponential race (the Gumbel-max trick): argmax_i p_i / E_i with E_i ~ Exp(1) i.i.d. is class i with
    probability p_i exactly (min_j E_j / p_j is Exp(sum p) distributed and falls on j = i with probability
    p_i / sum p). ``torch.multinomial`` draws the same distribution but validates its input on the host:
    a sync per call on CUDA. Computed in fp32 whatever autocast produced the logits."""
    probs = logits.float().softmax(-1)
    # a draw of exactly 0 (possible in float32) would make p / E infinite or NaN: clamp it to the smallest
    # normal float, which moves no probability a float32 can show
    race = torch.empty_like(probs).exponential_().clamp_(min=torch.finfo(torch.float32).tiny)
    return (probs / race).argmax(-1)


def num_groups(channels: int) -> int:
    """GroupNorm group count used everywhere: groups of 32 channels, at least one group."""
    return max(1, channels // GN_GROUP_SIZE)


def conv1x1(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=1, padding=0)


def conv3x3(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=1, padding=1)


LAYOUT_ENV = "DIAMOND_CONV_LAYOUT"  # channels_last | contiguous | auto (default)
_layout_choice: dict[tuple[int, str], bool] = {}
_forced_layout: list[bool | None] = [None]  # set by a layout probe while it times one layout
LayoutProbe = Callable[[], dict[str, float]]  # seconds of a training pass per layout (``models.unet.probe_conv_layouts``)


def conv_layout(x: Tensor, probe: LayoutProbe) -> Tensor:
    """The memory layout the denoiser's and actor-critic's convolutions run fastest in on this machine.

    Which one wins depends on the CPU, not on taste: channels_last (NHWC) made a paper-size denoiser
    training step 11 % faster on an AVX-512 Xeon, while on an AVX2 Zen 3 it made the same step 27 %
    slower (BASELINES.md); in the default layout the AdaGroupNorm fusion applies. So on CPU the choice
    is a short ``probe`` at first use (``channels_last_pays``), cached on disk per CPU model, torch version,
    thread count and ISA limit; ``DIAMOND_CONV_LAYOUT=channels_last|contiguous`` overrides it. GPUs keep
    the default layout (the cuDNN choice is left to the user). The probe is the caller's (the U-Net above
    this file times itself: ``models.unet.probe_conv_layouts``), so these blocks import nothing above them.
    """
    if x.device.type != "cpu":
        return x
    forced = _forced_layout[0]
    if forced if forced is not None else channels_last_pays(probe):
        return x.contiguous(memory_format=torch.channels_last)
    return x


def channels_last_pays(probe: LayoutProbe) -> bool:
    """Whether CPU convolutions of these models should run in channels_last here (see ``conv_layout``)."""
    choice = os.environ.get(LAYOUT_ENV, "auto")
    if choice not in ("auto", "channels_last", "contiguous"):
        raise ValueError(f"{LAYOUT_ENV}={choice!r}: expected channels_last, contiguous or auto")
    if choice != "auto":
        return choice == "channels_last"
    key = (torch.get_num_threads(), layout_probe.isa_limit())
    if key not in _layout_choice:
        # the first call may come from sampling (no_grad / inference_mode) or under autocast: the probe
        # times fp32 training passes regardless
        # fork_rng: building the probe network draws from the global stream, which would make a seeded
        # run's randomness depend on whether this machine's choice was already cached
        with torch.inference_mode(False), torch.enable_grad(), torch.autocast("cpu", enabled=False), \
                torch.random.fork_rng(devices=[]):
            _layout_choice[key] = layout_probe.cached_choice(probe)
    return _layout_choice[key]


def time_layouts(fwd_bwd: Callable[[], None], repeats: int = 3) -> dict[str, float]:
    """Best-of-``repeats`` seconds of ``fwd_bwd`` in each layout, the layouts alternating so that a busy
    machine slows both alike (round 0 warms oneDNN's primitive cache and is not counted)."""
    best = {"contiguous": float("inf"), "channels_last": float("inf")}
    for i in range(repeats + 1):
        for name in best:
            _forced_layout[0] = name == "channels_last"
            try:
                t0 = time.perf_counter()
                fwd_bwd()
                dt = time.perf_counter() - t0
            finally:
                _forced_layout[0] = None
            if i:
                best[name] = min(best[name], dt)
    return best


def silu_temp(x: Tensor) -> Tensor:
    """SiLU of a fresh temporary (a norm output): in place when autograd will not need ``x``.

    Under autograd, SiLU's backward needs its input, so ``silu_`` would first save a copy of it: the
    same memory as the out-of-place op plus one extra pass over the tensor. Without gradient (sampling,
    imagination) the in-place op saves an allocation.
    """
    return F.silu(x, inplace=not (x.requires_grad and torch.is_grad_enabled()))


class SiLUTemp(nn.Module):
    """``silu_temp`` as a module (keeps the index of ``nn.SiLU`` in Sequentials, hence the state-dict keys)."""

    def forward(self, x: Tensor) -> Tensor:
        return silu_temp(x)


def init_lstm(lstm: nn.LSTM | nn.LSTMCell) -> None:
    """LSTM init used by DIAMOND (spec §4.1): Xavier-uniform input-to-hidden weights, orthogonal
    hidden-to-hidden weights, zero biases except the forget-gate slice of the input bias, set to 1 so
    that early on the cell remembers by default. PyTorch stacks gates as (i, f, g, o): the forget gate
    is the second quarter."""
    for name, p in lstm.named_parameters():
        if name.startswith("weight_ih"):
            nn.init.xavier_uniform_(p.data)
        elif name.startswith("weight_hh"):
            nn.init.orthogonal_(p.data)
        elif name.startswith("bias"):
            p.data.zero_()
            if name.startswith("bias_ih"):
                n = p.size(0) // 4
                p.data[n : 2 * n] = 1.0


class GroupNorm(nn.Module):
    """Affine GroupNorm with max(1, C//32) groups; the wrapped module is named ``norm`` (state-dict key)."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(num_groups(in_channels), in_channels, eps=GN_EPS)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x)


class AdaGroupNorm(nn.Module):
    """Parameter-free GroupNorm followed by a per-sample affine map predicted from ``cond``.

    y = GN(x) * (1 + s) + b,  (s, b) = Linear(cond) split in two (scale first).
    """

    def __init__(self, in_channels: int, cond_channels: int) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.num_groups = num_groups(in_channels)
        self.linear = nn.Linear(cond_channels, 2 * in_channels)

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        if x.size(1) != self.in_channels:
            raise ValueError(f"AdaGroupNorm expects {self.in_channels} channels, got {x.size(1)}")
        scale, shift = self.linear(cond).chunk(2, dim=1)  # each (N, C)
        n, c, h, w = x.shape
        if x.is_contiguous():
            # Same function, one fused kernel: seen as a single sample with N·C channels and N·G groups,
            # each group is still the C/G channels of one sample, and the per-sample affine becomes a
            # per-channel one, which GroupNorm applies in the same pass. Saves a full read/write pass
            # and, in training, one saved activation per norm (the plain route keeps GN(x) for the
            # gradient of the scale): reward/end training step −30 % time, −2 GiB peak memory.
            y = F.group_norm(x.view(1, n * c, h, w), n * self.num_groups, (1 + scale).flatten(), shift.flatten(), GN_EPS)
            return y.view(n, c, h, w)
        # channels_last (the denoiser on CPU, see ``conv_layout``): the view above does not exist.
        h_ = F.group_norm(x, self.num_groups, eps=GN_EPS)
        return torch.addcmul(shift[:, :, None, None], h_, 1 + scale[:, :, None, None])


class SelfAttention2d(nn.Module):
    """Multi-head self-attention over all H·W positions, head dim 8.

    Faithful quirk (spec §12.13): the output is ``GroupNorm(x) + proj(attn)``, i.e. the residual is
    added to the *normalised* input. At initialisation (zero out_proj) the layer is just a GroupNorm.
    """

    def __init__(self, in_channels: int, head_dim: int = ATTN_HEAD_DIM) -> None:
        super().__init__()
        self.n_head = max(1, in_channels // head_dim)
        if in_channels % self.n_head != 0:
            raise ValueError(f"SelfAttention2d: {in_channels} channels not divisible into heads of {head_dim}")
        self.norm = GroupNorm(in_channels)
        self.qkv_proj = conv1x1(in_channels, 3 * in_channels)
        self.out_proj = conv1x1(in_channels, in_channels)
        nn.init.zeros_(self.out_proj.weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        x = self.norm(x)
        qkv = self.qkv_proj(x)
        # Channels [0, C) are q, [C, 2C) k, [2C, 3C) v; within each, heads are consecutive groups of head_dim.
        qkv = qkv.view(n, 3 * self.n_head, c // self.n_head, h * w).transpose(2, 3)
        q, k, v = qkv.chunk(3, dim=1)  # each (n, heads, h*w, head_dim)
        y = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(head_dim)) v
        y = y.transpose(2, 3).reshape(n, c, h, w)
        out = self.out_proj(y)
        return out.add_(x)  # conv output is not needed by autograd: safe in place


class FourierFeatures(nn.Module):
    """Random Fourier embedding of a scalar: [cos(2π t w), sin(2π t w)], w ~ N(0, 1) fixed.

    ``weight`` (1, C/2) is a buffer: not trained, but saved in (and loaded from) the state dict.
    """

    def __init__(self, cond_channels: int) -> None:
        super().__init__()
        if cond_channels % 2 != 0:
            raise ValueError(f"FourierFeatures needs an even size, got {cond_channels}")
        self.register_buffer("weight", torch.randn(1, cond_channels // 2))

    def forward(self, t: Tensor) -> Tensor:
        if t.ndim != 1:
            raise ValueError(f"FourierFeatures expects a 1-D tensor of scalars, got shape {tuple(t.shape)}")
        f = 2 * math.pi * t.unsqueeze(1) @ self.weight
        return torch.cat([f.cos(), f.sin()], dim=-1)


class Downsample(nn.Module):
    """3×3 conv, stride 2, same channels, orthogonal weight init."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, in_channels, kernel_size=3, stride=2, padding=1)
        nn.init.orthogonal_(self.conv.weight)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest-neighbour ×2 then 3×3 conv, same channels."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.conv = conv3x3(in_channels, in_channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class SmallResBlock(nn.Module):
    """y = skip(x) + Conv3x3(SiLU(GroupNorm(x))) (actor-critic encoder, spec §5.1)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.f = nn.Sequential(GroupNorm(in_channels), SiLUTemp(), conv3x3(in_channels, out_channels))
        self.skip_projection = nn.Identity() if in_channels == out_channels else conv1x1(in_channels, out_channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.skip_projection(x) + self.f(x)


class ResBlock(nn.Module):
    """Conditioned residual block: y = Conv(SiLU(AdaGN(Conv(SiLU(AdaGN(x)))))) + proj(x), then attention.

    The second conv is zero-initialised, so at init the block is its skip path (+ attention-as-GN).
    """

    def __init__(self, in_channels: int, out_channels: int, cond_channels: int, attn: bool) -> None:
        super().__init__()
        self.proj = conv1x1(in_channels, out_channels) if in_channels != out_channels else nn.Identity()
        self.norm1 = AdaGroupNorm(in_channels, cond_channels)
        self.conv1 = conv3x3(in_channels, out_channels)
        self.norm2 = AdaGroupNorm(out_channels, cond_channels)
        self.conv2 = conv3x3(out_channels, out_channels)
        self.attn = SelfAttention2d(out_channels) if attn else nn.Identity()
        nn.init.zeros_(self.conv2.weight)

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        r = self.proj(x)
        h = self.conv1(silu_temp(self.norm1(x, cond)))
        h = self.conv2(silu_temp(self.norm2(h, cond)))
        h = h.add_(r)  # conv outputs are not saved for backward: in place is safe
        return self.attn(h)


class ResBlocks(nn.Module):
    """A chain of ResBlocks; optionally concatenates one skip tensor before each block (U-Net decoder)."""

    def __init__(
        self, list_in_channels: Sequence[int], list_out_channels: Sequence[int], cond_channels: int, attn: bool
    ) -> None:
        super().__init__()
        if len(list_in_channels) != len(list_out_channels):
            raise ValueError("ResBlocks: in/out channel lists differ in length")
        self.resblocks = nn.ModuleList(
            [ResBlock(c_in, c_out, cond_channels, attn) for c_in, c_out in zip(list_in_channels, list_out_channels)]
        )

    def forward(
        self, x: Tensor, cond: Tensor, to_cat: Sequence[Tensor] | None = None
    ) -> tuple[Tensor, list[Tensor]]:
        outputs = []
        for i, resblock in enumerate(self.resblocks):
            if to_cat is not None:
                x = torch.cat((x, to_cat[i]), dim=1)
            x = resblock(x, cond)
            outputs.append(x)
        return x, outputs
