"""Each rank's share of a global batch, and the device a rank takes (no process group needed)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diamond_kedro.distributed import DistContext, ShardedSampler, rank_device


class Draws:
    """A sampler stand-in whose k-th global batch is known: ids 100k + i, starts 10k + i."""

    def __init__(self, batch_size: int) -> None:
        self.batch_size, self.seq_len, self.k = batch_size, 6, 0
        self.rng = np.random.default_rng(0)

    def draw_windows(self) -> tuple[np.ndarray, np.ndarray]:
        i = np.arange(self.batch_size)
        ids, starts = 100 * self.k + i, 10 * self.k + i
        self.k += 1
        return ids, starts


def test_ranks_take_disjoint_rows_that_make_up_the_global_batch() -> None:
    shards = [ShardedSampler(Draws(6), rank, 3) for rank in range(3)]
    assert [s.batch_size for s in shards] == [2, 2, 2]
    for k in range(2):  # every rank's sampler draws the same global batches in step
        parts = [s.draw_windows() for s in shards]
        assert np.concatenate([p[0] for p in parts]).tolist() == [100 * k + i for i in range(6)]
        assert parts[1][1].tolist() == [10 * k + 2, 10 * k + 3]
    assert shards[0].rng is shards[0].sampler.rng  # CS:GO runs save this generator's state


def test_a_global_batch_that_does_not_divide_is_refused() -> None:
    with pytest.raises(ValueError, match=r"batch_size 5 \(the global batch\) is not divisible by the 2 ranks"):
        ShardedSampler(Draws(5), 0, 2)


def test_single_process_context_changes_nothing() -> None:
    ctx = DistContext()
    sampler = Draws(4)
    assert not ctx.enabled and ctx.is_main and ctx.shard(sampler) is sampler
    assert ctx.broadcast({"a": 1}) == {"a": 1}
    ran = []
    with ctx.main_first():  # one process: the body runs once, with no barrier to wait at
        ran.append(ctx.is_main)
    assert ran == [True]
    model = torch.nn.Linear(2, 1)
    model.compute_loss = lambda x: (model(x).sum(), {})
    loss, _ = ctx.loss(model)(torch.ones(3, 2))
    assert torch.allclose(loss, model(torch.ones(3, 2)).sum())


def test_rank_devices() -> None:
    assert rank_device("cpu", 3) == torch.device("cpu")
    if not torch.cuda.is_available():
        assert rank_device("auto", 1) == torch.device("cpu")
        with pytest.raises(ValueError, match="CUDA is not available"):
            rank_device("cuda", 0)
    with pytest.raises(ValueError, match=r"run.device='cuda:1' under torchrun: use auto, cuda or cpu"):
        rank_device("cuda:1", 0)
