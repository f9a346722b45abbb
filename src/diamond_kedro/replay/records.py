"""What a replay store holds, in memory (spec §0.2 indexing): the steps of an episode as the collector
writes them (:class:`EpisodeChunk`), a whole stored episode (:class:`Episode`), one mapped chunk file with
its summaries (``MappedChunk``), and the store's error classes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from diamond_kedro.errors import UserError

_MULTI_HOT_DTYPES = (np.dtype(np.float32), np.dtype(np.uint8))


class ReplayStoreError(UserError, ValueError):
    """Base class of the store's errors (a ValueError: it is always about bad input/data)."""


class CorruptChunkError(ReplayStoreError):
    """A chunk file cannot be read (truncated, not Arrow, wrong schema or metadata)."""


class ManifestMismatchError(ReplayStoreError):
    """``manifest.json`` disagrees with the chunk files on disk."""


def _check_array(name: str, value: Any, dtype: np.dtype | tuple[np.dtype, ...], ndim: int) -> np.ndarray:
    if not isinstance(value, np.ndarray):
        raise ValueError(f"EpisodeChunk.{name} must be a numpy array, got {type(value).__name__}")
    allowed = dtype if isinstance(dtype, tuple) else (dtype,)
    if value.dtype not in allowed:
        want = " or ".join(str(d) for d in allowed)
        raise ValueError(f"EpisodeChunk.{name} has dtype {value.dtype}, expected {want}")
    if value.ndim != ndim:
        raise ValueError(f"EpisodeChunk.{name} has shape {value.shape} ({value.ndim}-D), expected {ndim}-D")
    return value


class _StepViews:
    """What every holder of one episode's step arrays (``obs``, ``end``, ``trunc``) derives from them."""

    obs: np.ndarray
    end: np.ndarray
    trunc: np.ndarray

    @property
    def length(self) -> int:
        return int(self.obs.shape[0])

    @property
    def dead(self) -> bool:
        """Whether the last step ends the episode (end OR trunc)."""
        return bool(self.end[-1] or self.trunc[-1])


@dataclass
class _Steps(_StepViews):
    """T consecutive steps (numpy, spec §0.2 indexing): obs[t] is the frame on which act[t] was taken;
    rew/end/trunc[t] are its consequences."""

    obs: np.ndarray  # uint8 (T, H, W, C)
    act: np.ndarray  # int64 (T,)  or  float32/uint8 (T, A) multi-hot
    rew: np.ndarray  # float32 (T,)
    end: np.ndarray  # uint8 (T,)
    trunc: np.ndarray  # uint8 (T,)


@dataclass
class EpisodeChunk(_Steps):
    """Steps of one episode as written by the collector. ``final_obs`` is the frame that followed the last
    step when that step ended the episode (end or trunc); it is only allowed then."""

    final_obs: np.ndarray | None = None  # uint8 (H, W, C)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        obs = _check_array("obs", self.obs, np.dtype(np.uint8), 4)
        if self.act.ndim == 1:
            _check_array("act", self.act, np.dtype(np.int64), 1)
        else:
            _check_array("act", self.act, _MULTI_HOT_DTYPES, 2)
        _check_array("rew", self.rew, np.dtype(np.float32), 1)
        _check_array("end", self.end, np.dtype(np.uint8), 1)
        _check_array("trunc", self.trunc, np.dtype(np.uint8), 1)
        t = obs.shape[0]
        if t == 0:
            raise ValueError("EpisodeChunk.obs is empty: a chunk needs at least one step")
        if min(obs.shape[1:]) == 0:
            raise ValueError(f"EpisodeChunk.obs has an empty frame shape {obs.shape[1:]}")
        for name in ("act", "rew", "end", "trunc"):
            n = getattr(self, name).shape[0]
            if n != t:
                raise ValueError(f"EpisodeChunk.{name} has {n} steps but obs has {t}")
        if not np.all(np.isfinite(self.rew)):
            bad = int(np.flatnonzero(~np.isfinite(self.rew))[0])
            raise ValueError(f"EpisodeChunk.rew[{bad}] = {self.rew[bad]} is not finite")
        for name in ("end", "trunc"):
            v = getattr(self, name)
            if v.max() > 1:
                raise ValueError(f"EpisodeChunk.{name} must hold 0/1, found value {int(v.max())}")
        dead = (self.end | self.trunc)[:-1]
        if dead.any():
            bad = int(np.flatnonzero(dead)[0])
            raise ValueError(
                f"EpisodeChunk has end/trunc at step {bad} of {t}: an episode can only end at its last step"
            )
        if self.final_obs is not None:
            _check_array("final_obs", self.final_obs, np.dtype(np.uint8), 3)
            if self.final_obs.shape != obs.shape[1:]:
                raise ValueError(
                    f"EpisodeChunk.final_obs has shape {self.final_obs.shape}, expected {obs.shape[1:]}"
                )
            if not self.dead:
                raise ValueError(
                    "EpisodeChunk.final_obs is only allowed when the chunk's last step has end or trunc"
                )


@dataclass
class Episode(_Steps):
    """A whole stored episode (read-only numpy arrays; zero-copy views for single-chunk episodes)."""

    final_obs: np.ndarray | None
    episode_id: int

    @property
    def finished(self) -> bool:
        return self.dead


@dataclass
class MappedChunk(_StepViews):
    """One mapped chunk file: its manifest record plus the zero-copy arrays."""

    episode_id: int
    index: int
    epoch: int
    relpath: str
    obs: np.ndarray
    act: np.ndarray
    rew: np.ndarray
    end: np.ndarray
    trunc: np.ndarray
    final_obs: np.ndarray | None
    # summaries (spec §1.5 counters): sign(rew) counts for -1/0/+1, number of end==1, raw return
    rew_counts: tuple[int, int, int] = field(init=False)
    end_count: int = field(init=False)
    ret: float = field(init=False)

    def __post_init__(self) -> None:
        sign = np.sign(self.rew)
        self.rew_counts = (int((sign < 0).sum()), int((sign == 0).sum()), int((sign > 0).sum()))
        self.end_count = int(self.end.sum())
        self.ret = float(self.rew.sum(dtype=np.float64))

    def record(self) -> dict[str, Any]:
        return {
            "file": self.relpath,
            "length": self.length,
            "epoch": self.epoch,
            "dead": self.dead,
            "has_final_obs": self.final_obs is not None,
            "rew_counts": list(self.rew_counts),
            "end_count": self.end_count,
            "return": self.ret,
        }
