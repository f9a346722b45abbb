"""The batch record every consumer of replay segments receives (spec §1.7)."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch


@dataclass
class Batch:
    """B segments of S consecutive steps, collated; tensors are on one device.

    obs:           (B, S, 3, H, W) float32 in [-1, 1]; padded steps are 0 (mid-gray).
    act:           (B, S) int64 action indices, or (B, S, A) float32 multi-hot (CS:GO).
    rew:           (B, S) float32 raw rewards.
    end:           (B, S) uint8, 1 where the episode terminated after this step.
    trunc:         (B, S) uint8, 1 where the episode was truncated after this step.
    mask_padding:  (B, S) bool, True for real steps, False for padding.
    final_obs:     (B, 3, H, W) float32 in [-1, 1]: the observation that followed the last step of the
                   segment's episode when that episode ended (zeros otherwise).
    has_final_obs: (B,) bool, whether ``final_obs`` holds a real frame.
    episode_ids:   the replay episode id of each segment.
    starts:        (B,) int64 start index of each window in its episode (may be negative: left padding).
    """

    obs: torch.Tensor
    act: torch.Tensor
    rew: torch.Tensor
    end: torch.Tensor
    trunc: torch.Tensor
    mask_padding: torch.Tensor
    final_obs: torch.Tensor
    has_final_obs: torch.Tensor
    episode_ids: list[int]
    starts: torch.Tensor

    @classmethod
    def of(cls, obs: torch.Tensor, act: torch.Tensor, rew: torch.Tensor | None = None) -> "Batch":
        """A batch of fully real segments that do not end (no padding, no end/trunc): for contexts built by
        hand, synthetic data and benchmarks. ``obs`` (B, S, 3, H, W) in [-1, 1], ``act`` (B, S[, A])."""
        b, s = obs.shape[:2]
        dev = obs.device
        return cls(
            obs=obs,
            act=act,
            rew=torch.zeros(b, s, device=dev) if rew is None else rew,
            end=torch.zeros(b, s, dtype=torch.uint8, device=dev),
            trunc=torch.zeros(b, s, dtype=torch.uint8, device=dev),
            mask_padding=torch.ones(b, s, dtype=torch.bool, device=dev),
            final_obs=torch.zeros(b, *obs.shape[2:], device=dev),
            has_final_obs=torch.zeros(b, dtype=torch.bool, device=dev),
            episode_ids=list(range(b)),
            starts=torch.zeros(b, dtype=torch.long, device=dev),
        )

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "Batch":
        moved = {
            f.name: getattr(self, f.name).to(device, non_blocking=non_blocking)
            for f in fields(self)
            if isinstance(getattr(self, f.name), torch.Tensor)
        }
        return replace(self, **moved)

    @property
    def batch_size(self) -> int:
        return self.obs.shape[0]

    @property
    def seq_len(self) -> int:
        return self.obs.shape[1]
