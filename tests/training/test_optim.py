"""AdamW grouping, warm-up schedule, optimiser step and resume (spec §6.2)."""

import copy
import io

import pytest
import torch
import torch.nn as nn

from diamond_kedro.training.optim import (
    make_optimizer,
    make_warmup_scheduler,
    optimizer_step,
    split_decay_params,
)


class Mixed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3)
        self.norm = nn.GroupNorm(1, 3)
        self.emb = nn.Embedding(4, 5)
        self.cell = nn.LSTMCell(5, 6)
        self.lstm = nn.LSTM(6, 7)
        self.head = nn.Sequential(nn.Linear(7, 8), nn.SiLU(), nn.Linear(8, 2, bias=False))
        self.register_buffer("fourier", torch.randn(4))  # buffers are not parameters


def test_weight_decay_grouping():
    model = Mixed()
    decay, no_decay = split_decay_params(model)
    assert decay == sorted(
        [
            "conv.weight",
            "cell.weight_ih",
            "cell.weight_hh",
            "lstm.weight_ih_l0",
            "lstm.weight_hh_l0",
            "head.0.weight",
            "head.2.weight",
        ]
    )
    assert no_decay == sorted(
        [
            "conv.bias",
            "norm.weight",
            "norm.bias",
            "emb.weight",
            "cell.bias_ih",
            "cell.bias_hh",
            "lstm.bias_ih_l0",
            "lstm.bias_hh_l0",
            "head.0.bias",
        ]
    )
    opt = make_optimizer(model, lr=1e-4, weight_decay=0.01)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.01, 0.0]
    assert len(opt.param_groups[0]["params"]) == 7 and len(opt.param_groups[1]["params"]) == 9
    assert opt.defaults["eps"] == 1e-8 and opt.defaults["betas"] == (0.9, 0.999)
    # prefixes forced to no decay
    decay2, _ = split_decay_params(model, no_decay_prefixes=("head.",))
    assert "head.0.weight" not in decay2 and "conv.weight" in decay2


def test_unknown_parameter_is_a_clear_error():
    class Odd(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = nn.Parameter(torch.ones(3))

    with pytest.raises(ValueError, match="'scale'"):
        make_optimizer(Odd())


def test_warmup_lr_sequence():
    model = nn.Linear(2, 1)
    opt = make_optimizer(model, lr=1e-4, weight_decay=0.0)
    sched = make_warmup_scheduler(opt, warmup_steps=100)
    w0 = model.weight.detach().clone()
    lrs = []
    for i in range(103):
        lrs.append(opt.param_groups[0]["lr"])
        optimizer_step(model, opt, sched, model(torch.ones(1, 2)).sum(), max_grad_norm=None)
        if i == 0:  # the very first update uses lr = 0
            assert torch.equal(model.weight.detach(), w0)
    expected = [i * 1e-6 for i in range(100)] + [1e-4] * 3  # step/100 · 1e-4, then constant
    assert lrs == pytest.approx(expected, abs=1e-15)


def test_grad_norm_before_clip_and_clipping():
    a = nn.Parameter(torch.zeros(2))
    b = nn.Parameter(torch.zeros(1))
    model = nn.Module()
    model.a, model.b = a, b
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    x = torch.tensor([3.0, 4.0])
    # loss = 3·a0 + 4·a1 + 12·b -> grads (3, 4) and (12): norm = sqrt(9 + 16 + 144) = 13
    loss = (a * x).sum() + 12.0 * b.sum()
    norm = optimizer_step(model, opt, None, loss, max_grad_norm=1.0)
    assert isinstance(norm, torch.Tensor) and float(norm) == pytest.approx(13.0)  # a tensor: no sync per step
    # clipped to unit norm: grads scaled by 1/13
    assert torch.allclose(a.grad, torch.tensor([3 / 13, 4 / 13]), atol=1e-6)
    assert torch.allclose(b.grad, torch.tensor([12 / 13]), atol=1e-6)
    # below the threshold nothing changes
    loss = (a * x).sum() + 12.0 * b.sum()
    assert float(optimizer_step(model, opt, None, loss, max_grad_norm=100.0)) == pytest.approx(13.0)
    assert torch.allclose(a.grad, x)


def _train(model, opt, sched, steps, lrs):
    torch.manual_seed(123)
    for _ in range(steps):
        lrs.append(sched.get_last_lr()[0])
        x = torch.randn(4, 3)
        optimizer_step(model, opt, sched, (model(x) ** 2).mean(), max_grad_norm=1.0)


def test_state_dict_round_trip_continues_schedule():
    torch.manual_seed(0)
    base = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 1))

    # uninterrupted: 6 steps
    ref = copy.deepcopy(base)
    opt = make_optimizer(ref, lr=1e-2, weight_decay=0.01)
    sched = make_warmup_scheduler(opt, warmup_steps=4)
    ref_lrs: list[float] = []
    _train(ref, opt, sched, 3, ref_lrs)
    _train(ref, opt, sched, 3, ref_lrs)

    # 3 steps, save, rebuild everything, load, 3 more steps
    m1 = copy.deepcopy(base)
    opt1 = make_optimizer(m1, lr=1e-2, weight_decay=0.01)
    sched1 = make_warmup_scheduler(opt1, warmup_steps=4)
    lrs: list[float] = []
    _train(m1, opt1, sched1, 3, lrs)
    buf = io.BytesIO()
    torch.save({"model": m1.state_dict(), "opt": opt1.state_dict(), "sched": sched1.state_dict()}, buf)
    buf.seek(0)
    state = torch.load(buf)

    m2 = copy.deepcopy(base)
    opt2 = make_optimizer(m2, lr=1e-2, weight_decay=0.01)
    sched2 = make_warmup_scheduler(opt2, warmup_steps=4)
    m2.load_state_dict(state["model"])
    opt2.load_state_dict(state["opt"])
    sched2.load_state_dict(state["sched"])
    assert opt2.param_groups[0]["lr"] == pytest.approx(3 / 4 * 1e-2)  # continues, not back to 0
    _train(m2, opt2, sched2, 3, lrs)

    assert lrs == pytest.approx([0.0, 0.25e-2, 0.5e-2, 0.75e-2, 1e-2, 1e-2])
    assert lrs == pytest.approx(ref_lrs)
    for p, q in zip(m2.parameters(), ref.parameters()):
        assert torch.allclose(p, q, atol=1e-7)
