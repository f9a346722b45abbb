"""Reward / termination model: conv encoder of (x_t, x_{t+1}) conditioned on a_t, LSTM, 5-logit head (spec §4).

Reward classes: 0 ↔ −1, 1 ↔ 0, 2 ↔ +1 (target = sign(r) + 1); termination classes: 0 continue, 1 end.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from diamond_kedro.models.blocks import Downsample, ResBlocks, conv3x3, init_lstm, sample_categorical  # noqa: F401 (re-exported)
from diamond_kedro.replay.batch import Batch

HxCx = tuple[Tensor, Tensor]


@dataclass
class RewEndModelConfig:
    num_actions: int | None = None
    lstm_dim: int = 512
    img_channels: int = 3
    img_size: int | tuple[int, int] = 64
    cond_channels: int = 128
    depths: list[int] = field(default_factory=lambda: [2, 2, 2, 2])
    channels: list[int] = field(default_factory=lambda: [32, 32, 32, 32])
    attn_depths: list[bool] = field(default_factory=lambda: [False, False, False, False])


class RewEndEncoder(nn.Module):
    """conv_in, then per level (down-sampler, ResBlocks), then a 5th stage of 2 attention ResBlocks."""

    def __init__(
        self, in_channels: int, cond_channels: int, depths: list[int], channels: list[int], attn_depths: list[bool]
    ) -> None:
        super().__init__()
        if not len(depths) == len(channels) == len(attn_depths):
            raise ValueError(f"RewEndEncoder: depths {depths}, channels {channels}, attn_depths {attn_depths} differ")
        self.conv_in = conv3x3(in_channels, channels[0])
        blocks = []
        for i, n in enumerate(depths):
            c_prev, c = channels[max(0, i - 1)], channels[i]
            blocks.append(ResBlocks([c_prev] + [c] * (n - 1), [c] * n, cond_channels, bool(attn_depths[i])))
        blocks.append(ResBlocks([channels[-1]] * 2, [channels[-1]] * 2, cond_channels, attn=True))
        self.blocks = nn.ModuleList(blocks)
        # Identities at 0 and at the last stage keep the checkpoint keys ``downsamples.{1,2,3}``.
        self.downsamples = nn.ModuleList([nn.Identity()] + [Downsample(c) for c in channels[:-1]] + [nn.Identity()])

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        x = self.conv_in(x)
        for block, down in zip(self.blocks, self.downsamples):
            x, _ = block(down(x), cond)
        return x


def confusion_matrix(pred: Tensor, target: Tensor, num_classes: int, mask: Tensor | None = None) -> Tensor:
    """(num_classes, num_classes) int64 counts, rows = true class, columns = predicted class; only the
    entries where ``mask`` is True count. A scatter-add into a fixed-size array: ``torch.bincount`` (and
    boolean-mask indexing) size their output from the data, which on CUDA is a host-device sync."""
    k2 = num_classes**2
    idx = (target.long() * num_classes + pred.long()).flatten()
    if mask is not None:
        idx = torch.where(mask.flatten(), idx, k2)  # masked entries land in a spill bin, dropped below
    counts = torch.zeros(k2 + 1, dtype=torch.long, device=idx.device).scatter_add_(0, idx, torch.ones_like(idx))
    return counts[:k2].view(num_classes, num_classes)


def classification_metrics(cm_rew: Tensor, cm_end: Tensor) -> dict[str, float]:
    """Per-class precision / recall / F1 from (possibly accumulated) confusion matrices (0 when undefined).

    Keys: ``{rew,end}_{precision,recall,f1_score}_class_{k}`` (spec §6.5).
    """
    out: dict[str, float] = {}
    for name, cm in (("rew", cm_rew), ("end", cm_end)):
        cm = cm.detach().cpu().double()  # one read per matrix (called once per phase, not per step)
        tp = cm.diagonal()
        predicted, actual = cm.sum(0), cm.sum(1)
        precision = torch.where(predicted > 0, tp / predicted.clamp(min=1), torch.zeros_like(tp))
        recall = torch.where(actual > 0, tp / actual.clamp(min=1), torch.zeros_like(tp))
        denom = precision + recall
        f1 = torch.where(denom > 0, 2 * precision * recall / denom.clamp(min=1e-12), torch.zeros_like(tp))
        for k, (p, r, f) in enumerate(zip(precision.tolist(), recall.tolist(), f1.tolist())):
            out[f"{name}_precision_class_{k}"] = p
            out[f"{name}_recall_class_{k}"] = r
            out[f"{name}_f1_score_class_{k}"] = f
    return out


class RewEndModel(nn.Module):
    def __init__(self, cfg: RewEndModelConfig) -> None:
        super().__init__()
        if cfg.num_actions is None or cfg.num_actions < 1:
            raise ValueError(f"RewEndModelConfig.num_actions must be a positive int, got {cfg.num_actions}")
        self.cfg = cfg
        self.encoder = RewEndEncoder(2 * cfg.img_channels, cfg.cond_channels, cfg.depths, cfg.channels, cfg.attn_depths)
        self.act_emb = nn.Embedding(cfg.num_actions, cfg.cond_channels)
        h, w = (cfg.img_size, cfg.img_size) if isinstance(cfg.img_size, int) else cfg.img_size
        num_down = len(cfg.depths) - 1
        for _ in range(num_down):  # stride-2, padding-1, kernel-3 convs: ceil halving
            h, w = math.ceil(h / 2), math.ceil(w / 2)
        self.lstm = nn.LSTM(cfg.channels[-1] * h * w, cfg.lstm_dim, batch_first=True)
        self.head = nn.Sequential(
            nn.Linear(cfg.lstm_dim, cfg.lstm_dim), nn.SiLU(), nn.Linear(cfg.lstm_dim, 3 + 2, bias=False)
        )
        init_lstm(self.lstm)

    @property
    def device(self) -> torch.device:
        return self.act_emb.weight.device

    def forward(
        self, obs: Tensor, act: Tensor, next_obs: Tensor, hx_cx: HxCx | None = None
    ) -> tuple[Tensor, Tensor, HxCx]:
        """obs, next_obs (B,T,3,H,W), act (B,T) → logits_rew (B,T,3), logits_end (B,T,2), (h, c) each (1,B,lstm)."""
        b, t, c, h, w = obs.shape
        x = torch.cat((obs.reshape(b * t, c, h, w), next_obs.reshape(b * t, c, h, w)), dim=1)
        x = self.encoder(x, self.act_emb(act.reshape(b * t)))
        # The LSTM runs in fp32 outside autocast: its state is carried across imagined steps, and under CUDA
        # autocast nn.LSTM takes cuDNN's autocast path, which computes in fp16 whatever dtype autocast asks
        # for (with no GradScaler to guard it). The encoder and head may run in bf16.
        dtype = self.lstm.weight_ih_l0.dtype  # the parameters' (fp32 in training)
        with torch.autocast(x.device.type, enabled=False):
            if hx_cx is not None:
                hx_cx = (hx_cx[0].to(dtype), hx_cx[1].to(dtype))
            x, hx_cx = self.lstm(x.reshape(b, t, -1).to(dtype), hx_cx)
        logits = self.head(x)
        return logits[:, :, :3], logits[:, :, 3:], hx_cx

    def compute_loss(self, batch: Batch) -> tuple[Tensor, dict]:
        """Cross-entropy of reward sign and termination over the valid transitions of each segment (§4.2).

        Transitions t = 0..S−2: (obs[t], act[t]) → obs[t+1], targets rew[t], end[t], valid iff obs[t] is
        real. At a terminal step the next frame (padding) is replaced by the episode's final observation.
        Returns (loss, metrics) with 0-dim tensors ``loss_rew``, ``loss_end``, ``loss_total`` and
        ``confusion_matrix`` {"rew": (3,3), "end": (2,2)} int64 tensors for accumulation (rows = true
        class); ``classification_metrics`` turns sums of them into the logged precision/recall/F1.

        No host-device sync: fixed shapes throughout (a masked mean instead of boolean indexing, the final
        observation substituted with ``where``), metrics left on the device (``MetricAccumulator`` reads
        them once per phase). The check that every ended segment has its final observation is exact on
        CPU tensors; elsewhere it is an asynchronous device assert (the sampler delivers has_final_obs
        from the store, so it only guards hand-made batches).
        """
        obs = batch.obs[:, :-1]
        act = batch.act[:, :-1]
        next_obs = batch.obs[:, 1:]
        rew = batch.rew[:, :-1]
        end = batch.end[:, :-1]
        mask = batch.mask_padding[:, :-1]

        dead = end.bool().any(dim=1)
        missing = dead & ~batch.has_final_obs.to(dead.device)
        if missing.device.type == "cpu":
            if missing.any():
                rows = missing.nonzero().flatten().tolist()
                raise ValueError(f"segments {rows} contain end=1 but has_final_obs is False (no final observation)")
        else:
            torch._assert_async(~missing.any(), "a segment contains end=1 but has_final_obs is False")
        # the first end step of each ended segment sees the episode's final observation instead of padding
        first_end = end.float().argmax(dim=1)  # (B,); 0 for segments that do not end (masked out by `dead`)
        at_end = (torch.arange(end.size(1), device=end.device) == first_end[:, None]) & dead[:, None]
        next_obs = torch.where(at_end[:, :, None, None, None], batch.final_obs[:, None].to(next_obs), next_obs)

        logits_rew, logits_end, _ = self(obs, act, next_obs)
        target_rew = rew.sign().long().add(1)
        target_end = end.long()
        # mean over the valid transitions (padded ones weigh 0)
        weight = mask.flatten().float()
        count = weight.sum().clamp(min=1)
        loss_rew = (F.cross_entropy(logits_rew.flatten(0, 1), target_rew.flatten(), reduction="none") * weight).sum() / count
        loss_end = (F.cross_entropy(logits_end.flatten(0, 1), target_end.flatten(), reduction="none") * weight).sum() / count
        loss = loss_rew + loss_end

        with torch.no_grad():
            cm_rew = confusion_matrix(logits_rew.argmax(-1), target_rew, 3, mask)
            cm_end = confusion_matrix(logits_end.argmax(-1), target_end, 2, mask)
        metrics: dict = {"loss_rew": loss_rew.detach(), "loss_end": loss_end.detach(), "loss_total": loss.detach()}
        metrics["confusion_matrix"] = {"rew": cm_rew, "end": cm_end}
        return loss, metrics

    @torch.no_grad()
    def predict_rew_end(
        self, obs: Tensor, act: Tensor, next_obs: Tensor, hx_cx: HxCx | None = None
    ) -> tuple[Tensor, Tensor, HxCx]:
        """One imagined transition per env: obs, next_obs (B,3,H,W), act (B,) → sampled reward (B,) float
        in {−1, 0, 1}, sampled end (B,) uint8, new (h, c). Sampling, not argmax (spec §4.3)."""
        logits_rew, logits_end, hx_cx = self(obs.unsqueeze(1), act.unsqueeze(1), next_obs.unsqueeze(1), hx_cx)
        rew = sample_categorical(logits_rew[:, 0]).float() - 1.0  # no host sync (blocks.sample_categorical)
        end = sample_categorical(logits_end[:, 0]).to(torch.uint8)
        return rew, end, hx_cx

    @torch.no_grad()
    def burn_in(self, obs: Tensor, act: Tensor) -> HxCx:
        """LSTM state after the L−1 context transitions (x_i, a_i, x_{i+1}) from a zero state.
        obs (B,L,3,H,W), act (B,L) → (h, c) each (1, B, lstm_dim)."""
        *_, hx_cx = self(obs[:, :-1], act[:, :-1], obs[:, 1:])
        return hx_cx
