"""Sync-free hot loops (issue 21), counted on CPU: host reads of tensor values made by our code.

On CUDA each of these (``.item()``, ``float()``/``bool()`` of a tensor, ``.tolist()``, ``nonzero``,
boolean-mask indexing, ``torch.multinomial``/``bincount``) waits for the GPU to finish all queued work. The
CPU cannot show the waits, but it can count the calls: ``HostReads`` patches them and counts those made
from ``src/diamond_kedro`` (torch's own internals, e.g. AdamW reading its CPU step counter, are not ours
and not syncs). ``benchmarks/gpu_checks.py`` counts the real syncs on a GPU with
``torch.cuda.set_sync_debug_mode``.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch

import diamond_kedro
from diamond_kedro.envs.world_model_env import WorldModelEnv, WorldModelEnvConfig
from diamond_kedro.models.actor_critic import ActorCritic, ActorCriticConfig
from diamond_kedro.models.blocks import sample_categorical
from diamond_kedro.models.denoiser import Denoiser, DenoiserConfig
from diamond_kedro.models.rew_end_model import RewEndModel, RewEndModelConfig
from diamond_kedro.models.unet import InnerModelConfig
from diamond_kedro.replay.batch import Batch
from diamond_kedro.training.imagination import RolloutLoop, actor_critic_loss
from diamond_kedro.training.optim import make_optimizer, optimizer_step
from diamond_kedro.training.run_common import MetricAccumulator

torch.set_num_threads(1)
A, S, L = 3, 16, 4
OURS = str(Path(diamond_kedro.__file__).parent)


class HostReads:
    """Context manager counting host reads of tensor values whose caller is in our package."""

    METHODS = ("item", "tolist", "__bool__", "__float__", "__int__", "__index__", "__format__", "nonzero", "numpy", "cpu")
    FUNCTIONS = ("multinomial", "bincount", "nonzero", "unique", "masked_select")

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.mp = monkeypatch
        self.calls: list[str] = []

    def _ours(self) -> bool:
        return sys._getframe(2).f_code.co_filename.startswith(OURS)

    def _wrap(self, name: str, fn):
        def wrapper(*args, **kwargs):
            if self._ours():
                self.calls.append(f"{name} at {sys._getframe(1).f_code.co_filename}:{sys._getframe(1).f_lineno}")
            return fn(*args, **kwargs)

        return wrapper

    def _index(self, name: str, fn):
        def has_bool(index) -> bool:
            items = index if isinstance(index, tuple) else (index,)
            return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in items)

        def wrapper(self_, index, *rest):
            if has_bool(index) and self._ours():
                self.calls.append(f"bool-mask {name} at {sys._getframe(1).f_code.co_filename}:{sys._getframe(1).f_lineno}")
            return fn(self_, index, *rest)

        return wrapper

    def __enter__(self) -> "HostReads":
        for m in self.METHODS:
            self.mp.setattr(torch.Tensor, m, self._wrap(f"Tensor.{m}", getattr(torch.Tensor, m)))
        for f in self.FUNCTIONS:
            self.mp.setattr(torch, f, self._wrap(f"torch.{f}", getattr(torch, f)))
        self.mp.setattr(torch.Tensor, "__getitem__", self._index("__getitem__", torch.Tensor.__getitem__))
        self.mp.setattr(torch.Tensor, "__setitem__", self._index("__setitem__", torch.Tensor.__setitem__))
        return self

    def __exit__(self, *exc) -> None:
        self.mp.undo()


def tiny_denoiser() -> Denoiser:
    return Denoiser(DenoiserConfig(inner_model=InnerModelConfig(num_actions=A, cond_channels=16, channels=[8, 8], depths=[1, 1], attn_depths=[0, 0])))


def tiny_rew_end() -> RewEndModel:
    return RewEndModel(RewEndModelConfig(num_actions=A, img_size=S, cond_channels=8, channels=[8, 8], depths=[1, 1], attn_depths=[0, 0], lstm_dim=16))


def rew_end_batch() -> Batch:
    """Padding on both sides, rewards of every sign and one segment that ends (with its final frame)."""
    torch.manual_seed(3)
    b = Batch.of(torch.rand(3, 8, 3, S, S) * 2 - 1, torch.randint(0, A, (3, 8)), torch.randn(3, 8))
    b.mask_padding[0, :2] = False
    b.mask_padding[1, 6:] = False
    b.end[1, 5] = 1
    b.has_final_obs[1] = True
    b.final_obs[1] = 0.5
    return b


def test_denoiser_training_step_reads_nothing(monkeypatch):
    torch.manual_seed(0)
    den = tiny_denoiser()
    opt = make_optimizer(den)
    acc = MetricAccumulator()
    batch = Batch.of(torch.rand(2, 6, 3, S, S) * 2 - 1, torch.randint(0, A, (2, 6)))
    with HostReads(monkeypatch) as reads:
        loss, metrics = den.compute_loss(batch)
        grad_norm = optimizer_step(den, opt, None, loss, 1.0)
        acc.add(metrics)
    assert reads.calls == []
    assert isinstance(grad_norm, torch.Tensor)
    assert acc.result()["loss_denoising"] == pytest.approx(loss.item())  # read once, at the end


def test_rew_end_training_step_reads_only_the_cpu_final_obs_check(monkeypatch):
    torch.manual_seed(0)
    model = tiny_rew_end()
    opt = make_optimizer(model)
    acc = MetricAccumulator()
    with HostReads(monkeypatch) as reads:
        loss, metrics = model.compute_loss(rew_end_batch())
        optimizer_step(model, opt, None, loss, 100.0)
        acc.add(metrics)
    # the one read: the exact has_final_obs check, made only for CPU tensors (an async device assert elsewhere)
    assert len(reads.calls) == 1 and "rew_end_model.py" in reads.calls[0], reads.calls


def test_rew_end_loss_equals_mean_over_valid_transitions_with_final_obs():
    """The sync-free loss (masked mean, final frame substituted with ``where``) against a direct computation."""
    torch.manual_seed(0)
    model = tiny_rew_end()
    b = rew_end_batch()
    loss, metrics = model.compute_loss(b)
    next_obs = b.obs[:, 1:].clone()
    next_obs[1, 5] = b.final_obs[1]  # segment 1 ends at step 5: its next frame is the final observation
    lr, le, _ = model(b.obs[:, :-1], b.act[:, :-1], next_obs)
    valid = b.mask_padding[:, :-1]
    ref_rew = torch.nn.functional.cross_entropy(lr[valid], b.rew[:, :-1][valid].sign().long() + 1)
    ref_end = torch.nn.functional.cross_entropy(le[valid], b.end[:, :-1][valid].long())
    torch.testing.assert_close(metrics["loss_rew"], ref_rew)
    torch.testing.assert_close(metrics["loss_end"], ref_end)
    torch.testing.assert_close(loss, ref_rew + ref_end)
    assert int(metrics["confusion_matrix"]["rew"].sum()) == int(valid.sum()) == 5 + 6 + 7


def test_imagination_reads_one_value_per_step(monkeypatch):
    """Per imagined step: one read (which rows died; the number of new contexts depends on it)."""
    torch.manual_seed(0)
    den, rem = tiny_denoiser(), tiny_rew_end()
    ac = ActorCritic(ActorCriticConfig(num_actions=A, channels=(4, 4, 8, 8), lstm_dim=16, img_size=S))

    def contexts(n: int) -> Batch:
        return Batch.of(torch.rand(n, L, 3, S, S) * 2 - 1, torch.randint(0, A, (n, L)))

    env = WorldModelEnv(den, rem, contexts, WorldModelEnvConfig(horizon=2, num_batches_to_preload=8), num_envs=4)
    loop = RolloutLoop(env, ac)
    loop.reset()  # the first context refill reads once: not part of the loop
    k = 5
    with HostReads(monkeypatch) as reads:
        rollout = loop.run(k)  # horizon 2: rows die at steps 1 and 3 (truncation), with burn-in
        loss, metrics = actor_critic_loss(rollout)
        MetricAccumulator().add(metrics)
    assert rollout.trunc.sum() > 0
    assert len(reads.calls) == k, reads.calls
    assert all("world_model_env.py" in c and "nonzero" in c for c in reads.calls), reads.calls


@pytest.mark.parametrize("probs", [(0.5, 0.3, 0.15, 0.05), (0.01, 0.98, 0.01, 0.0)])
def test_gumbel_max_sampling_draws_softmax_probabilities(probs):
    """Chi-square of 200 000 draws at a fixed seed against the closed-form probabilities."""
    n = 200_000
    p = torch.tensor(probs, dtype=torch.float64)
    logits = torch.log(p.clamp(min=1e-30)).float().expand(n, 4)
    torch.manual_seed(0)
    draws = sample_categorical(logits)
    counts = torch.bincount(draws, minlength=4).double()
    assert counts[p == 0].sum() == 0  # a zero-probability class is never drawn
    expected = n * p[p > 0]
    chi2 = ((counts[p > 0] - expected) ** 2 / expected).sum().item()
    dof = int((p > 0).sum()) - 1
    assert chi2 < {3: 16.27, 2: 13.82}[dof]  # the 0.999 quantile of chi-square(dof)
    # bf16 logits (autocast) draw the same distribution: computed in fp32
    assert sample_categorical(logits.bfloat16()).dtype == torch.int64
    assert math.isclose(sample_categorical(logits.bfloat16()).eq(0).double().mean().item(), probs[0], abs_tol=0.01)
