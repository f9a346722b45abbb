"""One optimiser-step implementation for every run (``TrainingRun._train_steps``): k accumulated micro-batches
are one step on their concatenation, checked against the closed-form gradient of a mean squared error."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import torch
from torch.optim.lr_scheduler import LambdaLR

from diamond_kedro.training.run_common import TrainingRun


class TinyRun(TrainingRun):
    """Only what ``_train_steps`` reads: one model ``m`` trained by plain SGD (no warm-up, no clipping)."""

    kind, curve_keys = "tiny", ()
    total_epochs = None

    def __init__(self, model: torch.nn.Module, lr: float) -> None:  # no run folder, no device set-up
        training = SimpleNamespace(max_grad_norm=None, steps_per_epoch=1)
        self.cfg = SimpleNamespace(m=SimpleNamespace(training=training), run=SimpleNamespace(compile=False))
        self.device, self.amp, self.pending = torch.device("cpu"), False, None
        self.counters = SimpleNamespace(epoch=0, num_batch_train={"m": 0})
        opt = torch.optim.SGD(model.parameters(), lr=lr)
        self.optimizers, self.schedulers = {"m": opt}, {"m": LambdaLR(opt, lambda step: 1.0)}
        self._components, self._model = {}, model

    def model(self, name: str) -> torch.nn.Module:
        return self._model

    def _check_state(self, state, path: Path) -> None: ...

    def _load_components(self, state, path: Path) -> None: ...


def _mse(model: torch.nn.Linear, x: torch.Tensor, y: torch.Tensor):
    loss = ((model(x).squeeze(-1) - y) ** 2).mean()
    return loss, {"loss": loss.detach()}


def test_k_accumulated_micro_batches_are_one_step_on_their_concatenation() -> None:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(12, 3, generator=g, dtype=torch.float64), torch.randn(12, generator=g, dtype=torch.float64)
    w0 = torch.tensor([[0.5, -1.0, 2.0]], dtype=torch.float64)
    lr, k = 0.1, 4

    def model() -> torch.nn.Linear:
        m = torch.nn.Linear(3, 1, bias=False).double()
        with torch.no_grad():
            m.weight.copy_(w0)
        return m

    accumulated, whole = model(), model()
    parts = iter(zip(x.chunk(k), y.chunk(k)))
    out_acc = (r := TinyRun(accumulated, lr))._train_steps(r.component("m"), lambda: _mse(accumulated, *next(parts)), grad_acc_steps=k)
    out_one = (r := TinyRun(whole, lr))._train_steps(r.component("m"), lambda: _mse(whole, x, y))

    # closed form: d/dw mean((x w - y)^2) = 2/N x^T (x w - y); SGD: w1 = w0 - lr * grad
    grad = 2.0 / len(x) * (x.T @ (x @ w0[0] - y))
    expected = w0[0] - lr * grad
    torch.testing.assert_close(whole.weight[0].detach(), expected)
    torch.testing.assert_close(accumulated.weight[0].detach(), expected)
    assert math.isclose(out_acc["grad_norm_before_clip"], float(grad.norm()), rel_tol=1e-12)
    assert math.isclose(out_one["grad_norm_before_clip"], float(grad.norm()), rel_tol=1e-12)
    assert out_acc["num_batch_train_m"] == out_one["num_batch_train_m"] == 1
    # the metrics are the mean over the micro-batches (equal sizes: the whole batch's loss)
    assert math.isclose(out_acc["loss"], float(((x @ w0[0] - y) ** 2).mean()), rel_tol=1e-12)


def test_each_micro_batch_but_the_last_skips_the_all_reduce() -> None:
    m = torch.nn.Linear(3, 1, bias=False).double()
    calls: list[bool] = []

    class Recorder:
        def __init__(self, last: bool) -> None:
            calls.append(last)

        def __enter__(self) -> None: ...

        def __exit__(self, *exc) -> None: ...

    x, y = torch.ones(2, 3, dtype=torch.float64), torch.zeros(2, dtype=torch.float64)
    (r := TinyRun(m, 0.1))._train_steps(r.component("m"), lambda: _mse(m, x, y), grad_acc_steps=3, accumulating=Recorder)
    assert calls == [False, False, True]
