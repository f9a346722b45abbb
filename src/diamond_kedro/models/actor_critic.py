"""Actor-critic of DIAMOND (spec §5.1): small conv encoder -> LSTMCell -> policy and value heads.

The module and attribute names reproduce the official state-dict layout (spec Appendix B, prefix
``actor_critic.``) so an official agent file loads with no missing or unexpected keys:

    encoder.encoder.0.{weight,bias}                 first 3x3 conv, 3 -> 32
    encoder.encoder.{1,3,5,7}.f.0.norm.{weight,bias} GroupNorm of each small residual block
    encoder.encoder.{1,3,5,7}.f.2.{weight,bias}      3x3 conv of each block
    encoder.encoder.5.skip_projection.{weight,bias}  1x1 conv (32 -> 64), only where channels change
    lstm.{weight_ih,weight_hh,bias_ih,bias_hh}       LSTMCell 1024 -> 512
    critic_linear.{weight,bias}                      (1, 512)
    actor_linear.{weight,bias}                       (A, 512)

(max-pools sit at indices 2, 4, 6, 8 of the sequential and have no parameters.)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
from torch import Tensor

from diamond_kedro.models.blocks import SmallResBlock, conv_layout, init_lstm
from diamond_kedro.models.unet import probe_conv_layouts

HiddenState = tuple[Tensor, Tensor]


@dataclass
class ActorCriticConfig:
    """Defaults are the paper's Atari values (spec Appendix A); only ``num_actions`` is game-specific."""

    num_actions: int
    channels: tuple[int, ...] = (32, 32, 64, 64)
    down: tuple[int, ...] = (1, 1, 1, 1)
    lstm_dim: int = 512
    img_channels: int = 3
    img_size: int = 64

    def __post_init__(self) -> None:
        if self.num_actions < 1:
            raise ValueError(f"ActorCriticConfig.num_actions must be >= 1, got {self.num_actions}")
        if len(self.channels) != len(self.down):
            raise ValueError(
                f"ActorCriticConfig: channels {tuple(self.channels)} and down {tuple(self.down)} "
                "must have the same length"
            )
        factor = 2 ** sum(1 for d in self.down if d)
        if self.img_size % factor != 0:
            raise ValueError(f"ActorCriticConfig.img_size={self.img_size} must be divisible by {factor}")

    @property
    def lstm_input_dim(self) -> int:
        """Flattened encoder output: last channel count x (img_size / 2^#pools)^2 (1024 for the paper)."""
        side = self.img_size // 2 ** sum(1 for d in self.down if d)
        return self.channels[-1] * side * side


class ActorCriticEncoder(nn.Module):
    """conv3x3 (3 -> c0), then per stage: SmallResBlock(c_{i-1} -> c_i) [+ 2x2 max-pool if down[i]]."""

    def __init__(self, cfg: ActorCriticConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(cfg.img_channels, cfg.channels[0], kernel_size=3, stride=1, padding=1)]
        for i, (c, d) in enumerate(zip(cfg.channels, cfg.down)):
            layers.append(SmallResBlock(cfg.channels[max(0, i - 1)], c))
            if d:
                layers.append(nn.MaxPool2d(2))
        self.encoder = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.encoder(x)


class ActorCritic(nn.Module):
    """Shared trunk with recurrent state; ``forward(obs, (h, c)) -> (logits, value, (h, c))``."""

    def __init__(self, cfg: ActorCriticConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.lstm_dim = cfg.lstm_dim
        self.encoder = ActorCriticEncoder(cfg)
        self.lstm = nn.LSTMCell(cfg.lstm_input_dim, cfg.lstm_dim)
        self.critic_linear = nn.Linear(cfg.lstm_dim, 1)
        self.actor_linear = nn.Linear(cfg.lstm_dim, cfg.num_actions)
        # Zero heads: the initial policy is exactly uniform and the initial value exactly 0 (spec §5.1).
        for head in (self.critic_linear, self.actor_linear):
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)
        init_lstm(self.lstm)

    @property
    def num_actions(self) -> int:
        return self.cfg.num_actions

    def zero_state(self, n: int, device: torch.device | None = None, dtype: torch.dtype | None = None) -> HiddenState:
        p = self.critic_linear.weight
        h = torch.zeros(n, self.lstm_dim, device=device or p.device, dtype=dtype or p.dtype)
        return h, torch.zeros_like(h)

    def encode(self, obs: Tensor) -> Tensor:
        """(N, 3, H, W) in [-1, 1] -> (N, lstm_input_dim) features (flattened, no extra nonlinearity)."""
        if obs.ndim != 4:
            raise ValueError(f"ActorCritic expects obs of shape (N, C, H, W), got {tuple(obs.shape)}")
        # flatten is logical (NCHW order) whatever the layout: the LSTM sees the same feature order.
        return self.encoder(conv_layout(obs, probe_conv_layouts)).flatten(start_dim=1)

    def cell(self, x: Tensor, hx_cx: HiddenState | None) -> HiddenState:
        """One LSTMCell step in fp32 whatever autocast is active: the state is carried across steps and
        updates, and a bf16 state would lose precision at every step (the encoder and heads may run in bf16)."""
        dtype = self.lstm.weight_ih.dtype  # the parameters' (fp32 in training)
        with torch.autocast(x.device.type, enabled=False):
            if hx_cx is None:
                hx_cx = self.zero_state(x.shape[0], x.device, dtype)
            h, c = self.lstm(x.to(dtype), (hx_cx[0].to(dtype), hx_cx[1].to(dtype)))
        return h, c

    def forward(self, obs: Tensor, hx_cx: HiddenState | None = None) -> tuple[Tensor, Tensor, HiddenState]:
        """Returns logits (N, A), value (N,), and the new LSTM state (h, c), each (N, lstm_dim), fp32."""
        h, c = self.cell(self.encode(obs), hx_cx)
        return self.actor_linear(h), self.critic_linear(h).squeeze(1), (h, c)

    def burn_in(self, obs_seq: Tensor, hx_cx: HiddenState | None = None) -> HiddenState:
        """Run the LSTM over (N, T, 3, H, W) frames and return the final (h, c) (with gradient).

        Equivalent to T calls of ``forward`` keeping only the state, but encodes all N*T frames in one
        batched call (the encoder is per-frame) and skips the heads, whose outputs would be discarded.
        """
        if obs_seq.ndim != 5:
            raise ValueError(f"ActorCritic.burn_in expects (N, T, C, H, W), got {tuple(obs_seq.shape)}")
        n, t = obs_seq.shape[:2]
        feats = self.encode(obs_seq.flatten(0, 1)).unflatten(0, (n, t))
        state = hx_cx if hx_cx is not None else self.zero_state(n, feats.device)
        for i in range(t):
            state = self.cell(feats[:, i], state)
        return state
