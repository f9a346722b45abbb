"""Data-parallel training under ``torchrun``: process-group set-up and tear-down, who writes, and the
two pieces a training step needs (each rank's share of a global batch, gradients averaged by
DistributedDataParallel).

Launch (one process per GPU, or ``gloo`` processes on CPU)::

    torchrun --standalone --nproc-per-node=N -m diamond_kedro --pipelines=atari --env=base

``torchrun`` sets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``; :func:`setup` reads them. Without them (a
plain ``kedro run``) everything here is a no-op: :class:`DistContext` with ``world_size == 1``, the
sampler and model returned as they are, no barrier.

The division of labour in one run:

* **rank 0 alone writes**: it collects into the replay store, trains the actor-critic in imagination,
  evaluates, commits ``state.pt``, agent versions, DVC metrics, and logs to MLflow (the hook checks
  :func:`env_rank`). The other ranks never write a file.
* **all ranks** train the ``denoiser`` and the ``rew_end_model`` (Atari) or the CS:GO ``denoiser`` and
  ``upsampler``: every rank draws the *same* global batch of windows (its sampler has the same seed) and
  materialises only its slice, rows ``[r*B/N, (r+1)*B/N)``, so the ranks' segments are disjoint and
  together are exactly the batch one process would draw. DDP averages the gradients, so every rank
  takes the same optimiser step.
* after rank 0's collection the others re-read the replay store (which must be on a filesystem all
  ranks see: one machine, or a shared mount) and take rank 0's counters.

Why the actor-critic stays on rank 0: imagination is a sequential loop (horizon 15, three denoiser
calls and one reward/end call per step) over a small batch (32 imagined envs). Splitting 32 envs over
N GPUs shortens each kernel but not the chain of launches, so the step is latency-bound and a GPU
does it nearly as fast alone; it also keeps the LSTM states, the world-model env's preloaded contexts
and the rollout loop in one process. The other ranks wait at a barrier meanwhile.
"""

from __future__ import annotations

import atexit
import datetime
import os
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, ContextManager, Iterator, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from diamond_kedro.replay.batch import Batch
from diamond_kedro.replay.sampler import collate_windows

T = TypeVar("T")

# Ranks other than 0 wait at barriers while rank 0 collects, trains the actor-critic and evaluates
# (the final 100-episode evaluation of a paper run can take hours): a generous collective timeout.
TIMEOUT = datetime.timedelta(hours=int(os.environ.get("DIAMOND_DIST_TIMEOUT_HOURS", "12")))


def env_rank() -> int:
    """This process's global rank as ``torchrun`` set it (0 outside torchrun); needs no process group."""
    return int(os.environ.get("RANK", "0"))


def env_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in the data-parallel group (``world_size == 1``: no group)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device | None = None  # the rank's device (None when not distributed)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    @contextmanager
    def main_first(self) -> Iterator[None]:
        """Rank 0 runs the block first (it may repair or roll back files), the others after it."""
        if not self.enabled:
            yield
            return
        if not self.is_main:
            dist.barrier()
        yield
        if self.is_main:
            dist.barrier()

    def broadcast(self, obj: T) -> T:
        """Rank 0's ``obj`` on every rank (a picklable object; a sync point)."""
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def decorrelate_rng(self) -> None:
        """Give each rank its own torch stream (diffusion noise, sigma), derived from rank 0's.

        All ranks load the same RNG state from ``state.pt``; left alone, row i of every rank's shard
        would get the same noise. Rank 0 keeps its stream (it is the one saved in ``state.pt``)."""
        if self.enabled and not self.is_main:
            base = int(torch.randint(0, 2**62, ()).item())
            torch.manual_seed(base + self.rank)

    def shard(self, sampler: Any) -> Any:
        """Rank r's rows of every global batch ``sampler`` draws (the sampler itself if not distributed)."""
        return ShardedSampler(sampler, self.rank, self.world_size) if self.enabled else sampler

    def loss(self, model: nn.Module) -> "DataParallelLoss":
        """``model.compute_loss`` with its gradients averaged over the ranks by DDP."""
        return DataParallelLoss(model, self)


_CTX: DistContext | None = None


def context() -> DistContext:
    """The current context (set up by :func:`setup`; a single-process one before that)."""
    return _CTX if _CTX is not None else DistContext()


def rank_device(device_spec: str, local_rank: int) -> torch.device:
    """The device of this rank: ``cuda:<LOCAL_RANK>`` for ``auto``/``cuda`` when CUDA is present, else CPU."""
    if device_spec == "auto":
        device_spec = "cuda" if torch.cuda.is_available() else "cpu"
    if device_spec == "cpu":
        return torch.device("cpu")
    if device_spec != "cuda":
        raise ValueError(
            f"run.device={device_spec!r} under torchrun: use auto, cuda or cpu (each rank takes cuda:<LOCAL_RANK>)"
        )
    if not torch.cuda.is_available():
        raise ValueError("run.device='cuda' but CUDA is not available on this machine")
    if local_rank >= torch.cuda.device_count():
        raise ValueError(
            f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} GPU(s): "
            "use --nproc-per-node <= the number of GPUs"
        )
    return torch.device("cuda", local_rank)


def setup(device_spec: str = "auto") -> DistContext:
    """Join the process group torchrun described in the environment (once per process; idempotent).

    Backend: ``nccl`` on CUDA, ``gloo`` on CPU. Outside torchrun: a single-process context."""
    global _CTX
    if _CTX is not None:
        return _CTX
    world = env_world_size()
    if world <= 1:
        _CTX = DistContext()
        return _CTX
    rank, local_rank = env_rank(), int(os.environ.get("LOCAL_RANK", "0"))
    device = rank_device(device_spec, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        # device_id on CUDA: NCCL binds this rank's communicator to its GPU at once, instead of guessing the
        # device at the first collective (a barrier before any tensor is on the GPU can pick the wrong one)
        dist.init_process_group(
            backend="nccl" if device.type == "cuda" else "gloo",
            timeout=TIMEOUT,
            device_id=device if device.type == "cuda" else None,
        )
        atexit.register(teardown)
    _CTX = DistContext(rank=rank, world_size=world, local_rank=local_rank, device=device)
    return _CTX


def teardown() -> None:
    """Leave the process group (registered at exit by :func:`setup`)."""
    global _CTX
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    _CTX = None


class ShardedSampler:
    """Rank ``rank``'s slice of each global batch of a :class:`~diamond_kedro.replay.sampler.SegmentSampler`.

    Every rank's sampler has the same seed and so draws the same global windows (drawing indices is
    cheap); each rank reads only its ``batch_size / world_size`` rows from the store. The union over the
    ranks is exactly the batch one process draws, which is what makes a DDP run equal to a one-process
    run with the same global batch (tests/distributed)."""

    def __init__(self, sampler: Any, rank: int, world_size: int) -> None:
        if sampler.batch_size % world_size:
            raise ValueError(
                f"batch_size {sampler.batch_size} (the global batch) is not divisible by the {world_size} ranks"
            )
        self.sampler = sampler
        self.rank, self.world_size = rank, world_size
        self.batch_size = sampler.batch_size // world_size  # rows on this rank
        self.seq_len = sampler.seq_len

    @property
    def rng(self) -> np.random.Generator:
        return self.sampler.rng  # CS:GO runs save and restore it

    def draw_windows(self) -> tuple[np.ndarray, np.ndarray]:
        ids, starts = self.sampler.draw_windows()
        rows = slice(self.rank * self.batch_size, (self.rank + 1) * self.batch_size)
        return ids[rows], starts[rows]

    def sample(self) -> Batch:
        ids, starts = self.draw_windows()
        s = self.sampler
        return collate_windows(s.store, ids, starts, s.seq_len, s.device, s.pin_memory)


class _ComputeLoss(nn.Module):
    """DDP arms its gradient all-reduce in ``forward``; our models' training entry point is
    ``compute_loss``, so this module makes ``forward`` call it. It owns no parameters of its own, so
    the model's state dict (and every checkpoint) keeps its plain keys."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.model.compute_loss(*args, **kwargs)


class DataParallelLoss:
    """Call as ``loss, metrics = f(batch, ...)``; the backward of ``loss`` averages gradients over ranks.

    ``count``: for a loss that is a mean over a *variable* number of valid items per batch (the
    ``rew_end_model``'s transitions, which padding makes differ between shards), this rank's count.
    The loss is scaled by ``world_size * count / total`` so that DDP's plain average of the ranks'
    gradients equals the gradient of the mean over all valid items of the global batch (one integer
    all-reduce per step). Metrics stay this rank's (rank 0 logs the metrics of its shard).
    """

    def __init__(self, model: nn.Module, ctx: DistContext) -> None:
        self.model, self.ctx = model, ctx
        self.ddp: nn.Module | None = None
        if ctx.enabled:
            device_ids = [ctx.device.index] if ctx.device is not None and ctx.device.type == "cuda" else None
            # DDP broadcasts rank 0's parameters and buffers here, so all ranks start equal
            self.ddp = nn.parallel.DistributedDataParallel(_ComputeLoss(model), device_ids=device_ids)

    def __call__(self, *args: Any, count: int | torch.Tensor | None = None, **kwargs: Any) -> tuple[torch.Tensor, Any]:
        if self.ddp is None:
            return self.model.compute_loss(*args, **kwargs)
        loss, metrics = self.ddp(*args, **kwargs)
        if count is not None:
            local = torch.as_tensor(count, dtype=torch.float64, device=loss.device).reshape(())
            total = local.clone()
            dist.all_reduce(total)
            # counts are whole numbers: clamp(min=1) changes only total == 0, where local and the loss are 0
            # too; no host read of the total (a sync per step on CUDA)
            loss = loss * (self.ctx.world_size * local / total.clamp(min=1)).to(loss.dtype)
        return loss, metrics

    def accumulating(self, last: bool) -> ContextManager[Any]:
        """Gradient accumulation: skip the all-reduce on every micro-batch but the last (wrap forward
        and backward of each micro-batch in it)."""
        if self.ddp is None or last:
            return nullcontext()
        return self.ddp.no_sync()


def valid_transitions(batch: Batch) -> torch.Tensor:
    """Transitions the ``rew_end_model`` loss averages over: steps t < S-1 whose frame is real (§4.2)."""
    return batch.mask_padding[:, :-1].sum()
