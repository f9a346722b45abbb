"""Training precision chosen per machine: bf16 autocast where the hardware computes bf16 natively and it pays.

``run.amp`` is ``auto`` (the default), ``true`` or ``false``. ``auto`` resolves once per run:

* CUDA: bf16 when the GPU computes it natively (``torch.cuda.is_bf16_supported(including_emulation=False)``:
  Ampere and later). The default ``including_emulation=True`` also says yes on GPUs that only emulate bf16
  (V100, T4), where it is slower than fp32.
* CPU: bf16 only when oneDNN has native bf16 kernels on this CPU (AVX512-BF16 or AMX; with an ISA limit
  such as ``ONEDNN_MAX_CPU_ISA=AVX2`` it has none), *and* a short probe shows it pays: a forward + backward
  of the paper-size denoiser network in fp32 and under bf16 autocast, alternating, best of 2; bf16 is taken
  when it is at least ``BF16_MIN_SPEEDUP`` times faster. The result is cached per machine key (CPU model,
  torch, threads, ISA limit) next to the convolution-layout choice (``utils.layout_probe``).
* Anything else (MPS, a CPU without native bf16): fp32.

Why a probe and not the CPU flags alone: emulated or half-used bf16 can be slower than fp32 (casts cost
memory passes), and the gain depends on the core count. Why this is allowed at all: autocast keeps the
weights, optimiser state, losses and reductions in fp32 and runs convolutions and matmuls in bf16; the
world model's learning curve in bf16 was measured beside fp32 and the authors' code
(``benchmarks/bench_learning_wm.py --amp``, README "Does it learn?").
"""

from __future__ import annotations

import time
from typing import Callable, Literal

import torch

from diamond_kedro.utils import layout_probe

BF16_MIN_SPEEDUP = 1.3
AmpSetting = bool | Literal["auto"]
_memo: dict[tuple[int, str], bool] = {}
# builds (net, one forward + backward); given by the caller (set_probe_network), never imported from models/
ProbeNetwork = Callable[..., tuple[torch.nn.Module, Callable[[], None]]]
_probe_network: list[ProbeNetwork | None] = [None]


def cpu_has_native_bf16() -> bool:
    """oneDNN runs bf16 convolutions and matmuls natively here (False under an ISA limit below AVX512-BF16)."""
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def cuda_has_native_bf16() -> bool:
    """The current CUDA device computes bf16 natively (not emulated)."""
    return bool(torch.cuda.is_bf16_supported(including_emulation=False))


def resolve_amp(setting: AmpSetting, device: torch.device) -> bool:
    """Whether training forward passes run under bf16 autocast on ``device`` (see the module docstring)."""
    if isinstance(setting, bool):
        return setting
    if setting != "auto":
        raise ValueError(f"run.amp must be true, false or 'auto', got {setting!r}")
    if device.type == "cuda":
        return cuda_has_native_bf16()
    if device.type != "cpu" or not cpu_has_native_bf16():
        return False
    return bf16_pays_on_cpu()


def bf16_pays_on_cpu() -> bool:
    key = (torch.get_num_threads(), layout_probe.isa_limit())
    if key not in _memo:
        # the first call may come from inside no_grad / inference_mode code: the probe needs a backward;
        # fork_rng: a seeded run must draw the same numbers whether or not the choice was cached
        with torch.inference_mode(False), torch.enable_grad(), torch.random.fork_rng(devices=[]):
            choice = layout_probe.cached_pick("precision", probe_precision, pick_precision)
        _memo[key] = choice == "bf16"
    return _memo[key]


def pick_precision(seconds: dict[str, float]) -> str:
    return "bf16" if seconds["bf16"] * BF16_MIN_SPEEDUP <= seconds["fp32"] else "fp32"


def set_probe_network(factory: ProbeNetwork) -> None:
    """Give the bf16 probe its network (``models.unet.probe_network``): the code resolving ``run.amp`` does
    this at run start, since utils/ sits below models/ and imports nothing of it."""
    _probe_network[0] = factory


def probe_precision(repeats: int = 2) -> dict[str, float]:
    """Best-of-``repeats`` seconds of a forward + backward of the paper-size denoiser network on 2 frames, in
    fp32 and under bf16 autocast, alternating. About 3 s on 2 cores, once per machine (cached)."""
    probe_network = _probe_network[0]
    if probe_network is None:
        raise RuntimeError(
            "run.amp 'auto' needs the probe network: call utils.precision.set_probe_network(models.unet.probe_network) first"
        )
    _, fwd_bwd = probe_network(batch=2)
    best = {"fp32": float("inf"), "bf16": float("inf")}
    for i in range(repeats + 1):  # round 0 warms oneDNN's primitive cache and is not counted
        for name in best:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=name == "bf16"):
                t0 = time.perf_counter()
                fwd_bwd()
                dt = time.perf_counter() - t0
            if i:
                best[name] = min(best[name], dt)
    return best
