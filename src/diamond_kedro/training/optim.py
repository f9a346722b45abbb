"""Optimiser, LR warm-up and the optimiser step shared by the three components (spec §6.2).

Resume: rebuild model, optimiser (``make_optimizer``) and scheduler (``make_warmup_scheduler``) exactly
as in the first run, *then* ``optimizer.load_state_dict`` and ``scheduler.load_state_dict``. (Building
the scheduler after loading the optimiser state would leave the lr at the warm-up value 0 until the
next ``scheduler.step``.)
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.nn as nn
from torch import Tensor
from torch.optim.lr_scheduler import LambdaLR

# minGPT-style grouping: only the weight matrices of these modules are decayed.
DECAY_MODULES: tuple[type[nn.Module], ...] = (
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose2d,
    nn.LSTM,
    nn.LSTMCell,
)
NO_DECAY_MODULES: tuple[type[nn.Module], ...] = (
    nn.LayerNorm,
    nn.GroupNorm,
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.Embedding,
)


def split_decay_params(model: nn.Module, no_decay_prefixes: Iterable[str] = ()) -> tuple[list[str], list[str]]:
    """Names of parameters (decay, no_decay), each sorted.

    Decay: ``weight``/``weight_ih*``/``weight_hh*`` of Linear, Conv and LSTM(Cell) modules. No decay:
    every bias, norm/embedding weights, and anything under ``no_decay_prefixes``. A parameter fitting
    neither rule is an error (as in the authors' code), so a new parameter type cannot silently get
    the wrong treatment.
    """
    prefixes = tuple(no_decay_prefixes)
    decay: list[str] = []
    no_decay: list[str] = []
    for mod_name, module in model.named_modules():
        for p_name, _ in module.named_parameters(recurse=False):
            full = f"{mod_name}.{p_name}" if mod_name else p_name
            if prefixes and full.startswith(prefixes):
                no_decay.append(full)
            elif "bias" in p_name:
                no_decay.append(full)
            elif p_name.startswith("weight") and isinstance(module, DECAY_MODULES):
                decay.append(full)
            elif p_name.startswith("weight") and isinstance(module, NO_DECAY_MODULES):
                no_decay.append(full)
            else:
                raise ValueError(
                    f"make_optimizer: cannot decide weight decay for parameter '{full}' of "
                    f"{type(module).__name__}; add its module type to DECAY_MODULES/NO_DECAY_MODULES "
                    "or pass its prefix in no_decay_prefixes"
                )
    return sorted(decay), sorted(no_decay)


def make_optimizer(
    model: nn.Module,
    lr: float = 1e-4,
    weight_decay: float = 1e-2,
    eps: float = 1e-8,
    no_decay_prefixes: Iterable[str] = (),
) -> torch.optim.AdamW:
    """AdamW (betas 0.9/0.999) with two groups: decayed weight matrices and everything else at 0.

    Paper values: lr 1e-4, eps 1e-8, weight decay 1e-2 for denoiser and rew/end model, 0 for the
    actor-critic.
    """
    decay, no_decay = split_decay_params(model, no_decay_prefixes)
    params = dict(model.named_parameters())
    groups = [
        {"params": [params[n] for n in decay], "weight_decay": weight_decay},
        {"params": [params[n] for n in no_decay], "weight_decay": 0.0},
    ]
    # fused (one kernel for all parameters) where every parameter is on CUDA: the same AdamW update, fewer
    # launches (benchmarks/gpu_checks.py compares it with the default implementation). Models built on the
    # CPU and moved later (CS:GO's run.offload) keep the default.
    fused = bool(params) and all(p.device.type == "cuda" for p in params.values())
    return torch.optim.AdamW(groups, lr=lr, eps=eps, fused=fused or None)


class LinearWarmup:
    """LR multiplier ``step / warmup_steps`` for step < warmup_steps (so the first update uses lr 0),
    then 1 forever (no decay). A class rather than a closure so LambdaLR can save its state."""

    def __init__(self, warmup_steps: int) -> None:
        if warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
        self.warmup_steps = warmup_steps

    def __call__(self, step: int) -> float:
        return 1.0 if step >= self.warmup_steps else step / max(1, self.warmup_steps)


def make_warmup_scheduler(optimizer: torch.optim.Optimizer, warmup_steps: int = 100) -> LambdaLR:
    """Stepped once per optimiser step, never restarted (lr sequence 0, lr/100, 2 lr/100, …, lr, lr, …)."""
    return LambdaLR(optimizer, LinearWarmup(warmup_steps))


def optimizer_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: LambdaLR | None,
    loss: Tensor,
    max_grad_norm: float | None,
) -> Tensor:
    """zero_grad -> backward -> clip global grad norm -> step -> scheduler step.

    Returns the global L2 norm of the gradients *before* clipping (logged as
    ``grad_norm_before_clip``), a 0-dim tensor on the model's device: read it once per phase, not per step
    (``float()`` of it waits for the GPU to finish the step). Read ``scheduler.get_last_lr()`` *before* calling this to log the lr
    the update used. ``max_grad_norm=None`` measures the norm without clipping.
    """
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    return clip_and_step(model, optimizer, scheduler, max_grad_norm)


def clip_and_step(
    model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: LambdaLR | None, max_grad_norm: float | None
) -> Tensor:
    """The end of an update whose gradients are in ``.grad`` (one backward, or several accumulated): clip the
    global grad norm, step the optimiser and the schedule. Returns the norm before clipping (see
    :func:`optimizer_step`)."""
    params = [p for p in model.parameters() if p.grad is not None]
    max_norm = math.inf if max_grad_norm is None else max_grad_norm
    grad_norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    return grad_norm.detach()
