"""Segment sampling from a :class:`ReplayStore` (spec §1.7) and test-set traversal (spec §1.8).

Every batch is drawn independently:

1. episode probabilities p (recency groups or length-proportional, :func:`episode_probabilities`),
2. B episode ids with replacement from p,
3. a pivot t ~ U{0, ..., len-1} per segment,
4. a window [start, start+S):
     left padding (denoiser, imagination init):  stop = min(len, t + 1 + U{0..S-1}),  start = stop - S
     both sides (reward/termination model):      start = t - U{0..S-1},               stop = start + S
   (start may be < 0 and stop may be > len; the steps outside [0, len) are padding),
5. materialise: copy the real steps from the memory-mapped uint8 chunks, pad with
   obs = 0 (mid-gray in [-1, 1]), act = 0, rew = 0, end = 0, trunc = 0, mask_padding = False.

The uint8 -> float conversion x = 2 * v / 255 - 1 runs once per batch, on the target device (so on
a GPU only bytes cross the bus). For a CUDA device the host staging buffers are pinned and copied with
``non_blocking``, and padding is zeroed by fixed-shape multiplies rather than per-row or boolean-mask
writes (no host-device sync); :func:`prefetch` makes the next batches on a background thread while the
GPU computes.
"""

from __future__ import annotations

import queue
import threading
from typing import Callable, Iterator, Sequence

import numpy as np
import torch

from diamond_kedro.replay.batch import Batch
from diamond_kedro.replay.store import ReplayStore

ATARI_SAMPLE_WEIGHTS = (0.1, 0.1, 0.1, 0.7)  # spec §1.7 / Appendix A, all three consumers
_WEIGHT_SUM_TOL = 1e-6


def check_weights(weights: Sequence[float] | None) -> tuple[float, ...] | None:
    """Validate recency weights: each in [0, 1], summing to 1 (with a tolerance, unlike the original)."""
    if weights is None:
        return None
    w = tuple(float(x) for x in weights)
    if len(w) == 0:
        raise ValueError("sample weights must be None or a non-empty sequence")
    if any(not (0.0 <= x <= 1.0) for x in w):
        raise ValueError(f"sample weights must each lie in [0, 1], got {w}")
    if abs(sum(w) - 1.0) > _WEIGHT_SUM_TOL:
        raise ValueError(f"sample weights must sum to 1, got {w} (sum {sum(w)})")
    return w


def episode_probabilities(
    lengths: np.ndarray,
    weights: Sequence[float] | None,
    rank: int = 0,
    world_size: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """(episode ids, probabilities) this rank samples from.

    With N = len(lengths) episodes (ids in chronological order) and K = len(weights):
    * weights None or N < K:  p_i = len_i / sum(len)   (uniform over stored transitions);
    * else: K contiguous groups of sizes ⌊N/K⌋ (K-1 times) and ⌊N/K⌋ + N mod K (the newest),
      p_i = w_g / |group g| for i in group g (uniform within a group, not length-weighted).
    Rank r of R keeps ids r, r+R, r+2R, ... and renormalises their probabilities.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    n = len(lengths)
    if n == 0:
        raise ValueError("cannot sample from an empty replay store")
    w = check_weights(weights)
    if w is None or n < len(w):
        p = lengths / lengths.sum()
    else:
        k = len(w)
        q = n // k
        sizes = np.full(k, q, dtype=np.int64)
        sizes[-1] += n % k
        group = np.repeat(np.arange(k), sizes)  # group index of each episode id
        p = np.asarray(w, dtype=np.float64)[group] / sizes[group]
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, world_size), got rank={rank}, world_size={world_size}")
    ids = np.arange(rank, n, world_size)
    if len(ids) == 0:
        raise ValueError(f"rank {rank} of {world_size} has no episodes to sample (store has {n})")
    p = p[ids]
    total = p.sum()
    if total <= 0:
        raise ValueError(f"rank {rank} of {world_size}: its episodes all have probability 0 (weights {w})")
    return ids, p / total


def _to_model_range(u8: torch.Tensor) -> torch.Tensor:
    """(..., H, W, C) uint8 -> (..., C, H, W) float32 in [-1, 1]: x = v * (2/255) - 1.

    One strided copy does the channel move and the dtype change; the affine map runs in place.
    (``torch.mul(uint8_view, scalar, out=float)`` looks fused but is ~8x slower on CPU.)"""
    perm = u8.movedim(-1, -3)
    out = torch.empty(perm.shape, dtype=torch.float32, device=u8.device)
    out.copy_(perm)
    return out.mul_(2.0 / 255.0).sub_(1.0)


def collate_windows(
    store: ReplayStore,
    episode_ids: Sequence[int],
    starts: Sequence[int],
    seq_len: int,
    device: torch.device | str = "cpu",
    pin_memory: bool = False,
) -> Batch:
    """Materialise windows [start, start + seq_len) of the given episodes into a :class:`Batch`.

    Steps outside [0, len) are padding (see the module docstring for the padded values)."""
    if store.obs_shape is None or store.act_dtype is None:
        raise ValueError(f"replay store {store.root} is empty")
    device = torch.device(device)
    b_size, s = len(episode_ids), int(seq_len)
    h, w, c = store.obs_shape
    act_shape = store.act_shape or ()
    pin = pin_memory and device.type != "cpu" and torch.cuda.is_available()

    def host(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        return torch.zeros(shape, dtype=dtype, pin_memory=pin)

    # Host staging buffers (torch-owned so they can be pinned; numpy views for the copies).
    obs_t = torch.empty((b_size, s, h, w, c), dtype=torch.uint8, pin_memory=pin)
    act_t = host((b_size, s, *act_shape), _TORCH_DTYPE[np.dtype(store.act_dtype)])
    rew_t = host((b_size, s), torch.float32)
    end_t = host((b_size, s), torch.uint8)
    trunc_t = host((b_size, s), torch.uint8)
    final_t = torch.empty((b_size, h, w, c), dtype=torch.uint8, pin_memory=pin)
    obs_np, act_np, rew_np, end_np, trunc_np, final_np = (
        t.numpy() for t in (obs_t, act_t, rew_t, end_t, trunc_t, final_t)
    )
    mask_t = host((b_size, s), torch.bool)
    has_final_t = host((b_size,), torch.bool)
    starts_t = torch.as_tensor(np.asarray(starts, dtype=np.int64))
    if pin:
        starts_t = starts_t.pin_memory()
    mask, has_final = mask_t.numpy(), has_final_t.numpy()
    lengths = store.lengths
    for b, (eid, start) in enumerate(zip(episode_ids, starts)):
        eid, start = int(eid), int(start)
        lo, hi = max(start, 0), min(start + s, int(lengths[eid]))
        i, j = lo - start, hi - start
        if hi > lo:
            store.copy_window(
                eid,
                lo,
                hi,
                {
                    "obs": obs_np[b, i:j],
                    "act": act_np[b, i:j],
                    "rew": rew_np[b, i:j],
                    "end": end_np[b, i:j],
                    "trunc": trunc_np[b, i:j],
                },
            )
            mask[b, i:j] = True
        fo = store.final_obs(eid)
        if fo is not None:
            final_np[b] = fo
            has_final[b] = True
        else:
            final_np[b] = 0

    nb = pin  # non_blocking copies are only safe from pinned memory
    mask_d = mask_t.to(device, non_blocking=nb)
    has_final_d = has_final_t.to(device, non_blocking=nb)
    # zero the padded frames (uninitialised bytes in the staging buffer; 0 is mid-gray in [-1, 1]) and the
    # final frames of episodes that have none: fixed-shape multiplies, no per-row launches or mask indexing
    obs = _to_model_range(obs_t.to(device, non_blocking=nb)).mul_(mask_d[:, :, None, None, None])
    final_obs = _to_model_range(final_t.to(device, non_blocking=nb)).mul_(has_final_d[:, None, None, None])
    act = act_t.to(device, non_blocking=nb)
    if act_shape:  # multi-hot actions are delivered as float
        act = act.float()
    return Batch(
        obs=obs,
        act=act,
        rew=rew_t.to(device, non_blocking=nb),
        end=end_t.to(device, non_blocking=nb),
        trunc=trunc_t.to(device, non_blocking=nb),
        mask_padding=mask_d,
        final_obs=final_obs,
        has_final_obs=has_final_d,
        episode_ids=[int(e) for e in episode_ids],
        starts=starts_t.to(device, non_blocking=nb),
    )


def prefetch(sample: Callable[[], Batch], n: int, depth: int = 2) -> Iterator[Batch]:
    """The next ``n`` batches of ``sample()``, made ``depth`` ahead on a background thread.

    The same batches in the same order as ``n`` calls of ``sample()`` (one thread draws them in turn, and
    exactly ``n``: the sampler's generator ends where it would have), so a run is reproducible with or
    without it. Why: collating a batch (reading the replay chunks, pinned staging, the copy) is host work
    that would otherwise leave the GPU idle at every step. An error in ``sample`` is raised here; closing
    the iterator early (or an error in the consumer) stops the thread.
    """
    if n <= 0:
        return
    q: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def produce() -> None:
        for _ in range(n):
            if stop.is_set():
                return
            try:
                item: tuple[bool, object] = (True, sample())
            except BaseException as exc:  # handed to the consumer, which raises it
                item = (False, exc)
            while not stop.is_set():
                try:
                    q.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if not item[0]:
                return

    thread = threading.Thread(target=produce, name="replay-prefetch", daemon=True)
    thread.start()
    try:
        for _ in range(n):
            ok, value = q.get()
            if not ok:
                raise value  # type: ignore[misc]
            yield value  # type: ignore[misc]
    finally:
        stop.set()
        thread.join()


_TORCH_DTYPE = {
    np.dtype(np.int64): torch.int64,
    np.dtype(np.float32): torch.float32,
    np.dtype(np.uint8): torch.uint8,
}


class SegmentSampler:
    """Infinite iterator of independently drawn batches of segments (spec §1.7).

    Args:
        store: the replay store; batches always reflect its current content (it grows each epoch).
        batch_size: B.
        seq_len: S (denoiser 6, reward/termination model 19, imagination init 4).
        padding: "left" (windows end at or after the pivot, never past the episode end) or "both".
        weights: recency weights over contiguous id groups, or None for length-proportional.
        seed / generator: numpy randomness (a Generator wins over a seed).
        device: where the batch lands; the uint8 -> float conversion runs there.
        pin_memory: pin host staging buffers (only used for a CUDA device).
        rank, world_size: rank r of R samples episodes r, r+R, ... (weights renormalised).
    """

    def __init__(
        self,
        store: ReplayStore,
        batch_size: int,
        seq_len: int,
        padding: str = "left",
        weights: Sequence[float] | None = ATARI_SAMPLE_WEIGHTS,
        seed: int | None = None,
        generator: np.random.Generator | None = None,
        device: torch.device | str = "cpu",
        pin_memory: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if padding not in ("left", "both"):
            raise ValueError(f"padding must be 'left' or 'both', got {padding!r}")
        if batch_size < 1 or seq_len < 1:
            raise ValueError(f"batch_size and seq_len must be >= 1, got {batch_size}, {seq_len}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size), got rank={rank}, world_size={world_size}")
        self.store = store
        self.batch_size = int(batch_size)
        self.seq_len = int(seq_len)
        self.padding = padding
        self.weights = check_weights(weights)
        self.rng = generator if generator is not None else np.random.default_rng(seed)
        self.device = torch.device(device)
        self.pin_memory = pin_memory
        self.rank, self.world_size = rank, world_size
        self._cached_version: int | None = None
        self._ids = self._probs = self._lengths = np.zeros(0)

    def _refresh_probabilities(self) -> None:
        if self._cached_version != self.store.version or self._cached_version is None:
            self._lengths = self.store.lengths
            self._ids, self._probs = episode_probabilities(
                self._lengths, self.weights, self.rank, self.world_size
            )
            self._cached_version = self.store.version

    def episode_probabilities(self) -> tuple[np.ndarray, np.ndarray]:
        self._refresh_probabilities()
        return self._ids, self._probs

    def draw_windows(self) -> tuple[np.ndarray, np.ndarray]:
        """(episode ids, window starts) of one batch, following steps 1-4 of §1.7."""
        self._refresh_probabilities()
        b, s, rng = self.batch_size, self.seq_len, self.rng
        ids = rng.choice(self._ids, size=b, p=self._probs)
        lens = self._lengths[ids]
        pivot = rng.integers(0, lens)  # t ~ U{0, ..., len-1}
        offset = rng.integers(0, s, size=b)  # U{0, ..., S-1}
        if self.padding == "left":
            stop = np.minimum(lens, pivot + 1 + offset)
            start = stop - s
        else:
            start = pivot - offset
        return ids.astype(np.int64), start.astype(np.int64)

    def sample(self) -> Batch:
        ids, starts = self.draw_windows()
        return collate_windows(self.store, ids, starts, self.seq_len, self.device, self.pin_memory)

    def __iter__(self) -> Iterator[Batch]:
        while True:
            yield self.sample()

    def prefetch(self, n: int, depth: int = 2) -> Iterator[Batch]:
        """The next ``n`` batches, made on a background thread (:func:`prefetch`)."""
        return prefetch(self.sample, n, depth)


def test_windows(lengths: Sequence[int], seq_len: int) -> list[tuple[int, int]]:
    """(episode id, start) of the §1.8 traversal: consecutive non-overlapping windows from 0 in
    each episode (the last one right-padded), dropping a window with fewer than 2 real steps."""
    out = []
    for eid, n in enumerate(lengths):
        for start in range(0, int(n), seq_len):
            if min(seq_len, int(n) - start) >= 2:
                out.append((eid, start))
    return out


test_windows.__test__ = False  # type: ignore[attr-defined]  # not a pytest test despite the name


def iter_test_batches(
    store: ReplayStore,
    batch_size: int,
    seq_len: int,
    device: torch.device | str = "cpu",
) -> Iterator[Batch]:
    """Deterministic test traversal (spec §1.8): batches of ``batch_size`` windows in episode
    order; the last batch may be smaller."""
    windows = test_windows(store.lengths, seq_len)
    for i in range(0, len(windows), batch_size):
        part = windows[i : i + batch_size]
        yield collate_windows(store, [w[0] for w in part], [w[1] for w in part], seq_len, device)
