"""What the model benchmarks share: the worker process set-up, step timing, resource figures, and running
one component in a fresh subprocess (so allocator settings and peak RSS are per component)."""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from typing import Any, Callable

from _record import maybe_record

ISA_ENV = {  # limits every kernel library to AVX2, the ISA of the machine the authors' figures come from
    "avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
}
NUM_ACTIONS = 4  # Breakout, as in BASELINES.md


def setup(args: argparse.Namespace) -> tuple[Any, Any, bool]:
    """Tune malloc (before torch allocates anything), then import and configure torch.
    Returns (torch, device, whether malloc was tuned)."""
    from diamond_kedro.utils.allocator import tune_glibc_malloc

    tuned = False if args.no_malloc_tuning else tune_glibc_malloc()
    import torch

    torch.set_num_threads(args.threads)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(0)
    return torch, torch.device(args.device), tuned


def add_amp_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--amp", choices=["auto", "on", "off"], default="auto",
                   help="bf16 autocast of our steps as run.amp does: auto (the default: per machine, "
                        "diamond_kedro.utils.precision), on, off (fp32)")


def resolve_worker_amp(args: argparse.Namespace, device: Any) -> bool:
    """``--amp`` resolved as a run resolves ``run.amp`` (the probe, when needed, runs here, before timing)."""
    from diamond_kedro.models.unet import probe_network
    from diamond_kedro.utils.precision import resolve_amp, set_probe_network

    set_probe_network(probe_network)
    return resolve_amp({"on": True, "off": False}.get(args.amp, "auto"), device)


def autocast(device: Any, enabled: bool):
    import torch

    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


def synthetic_segments(n: int, seq_len: int, seed: int = 0, size: int = 64) -> dict[str, Any]:
    """n fully real segments of random frames, actions and rewards in {-1, 0, 1}, the same for a given
    seed in any process: both sides of bench_vs_authors.py are fed these tensors."""
    import torch

    g = torch.Generator().manual_seed(seed)
    return {
        "obs": torch.rand(n, seq_len, 3, size, size, generator=g) * 2 - 1,
        "act": torch.randint(0, NUM_ACTIONS, (n, seq_len), generator=g),
        "rew": torch.randint(-1, 2, (n, seq_len), generator=g).float(),
        "end": torch.zeros(n, seq_len, dtype=torch.uint8),
        "trunc": torch.zeros(n, seq_len, dtype=torch.uint8),
        "mask_padding": torch.ones(n, seq_len, dtype=torch.bool),
    }


def random_batch(n: int, seq_len: int, device: Any, random_rewards: bool = False, size: int = 64, seed: int = 0) -> Any:
    """``synthetic_segments`` as our Batch (rewards zero unless asked)."""
    from diamond_kedro.replay.batch import Batch

    s = synthetic_segments(n, seq_len, seed, size)
    return Batch.of(s["obs"], s["act"], s["rew"] if random_rewards else None).to(device)


def measure(device: Any, step: Callable[[], None], warmup: int, steps: int, count_flops: bool = False) -> dict[str, Any]:
    """Wall and process-CPU seconds of ``steps`` calls of ``step`` after ``warmup`` untimed calls, with the
    system time and minor page faults of the timed steps alone (first-touch faults of the warm-up are a
    one-off per process: an epoch repeats each step hundreds of times), and peak RSS and totals of the process.

    ``count_flops``: the first warm-up call (one extra call when ``warmup`` is 0) runs under torch's FLOP
    counter, so the result carries ``flops_per_step`` (convolutions and matrix products, forward and
    backward, as ``torch.utils.flop_counter`` counts them) and GFLOP/s can be set against the machine's
    ceiling (``ceiling``)."""
    import torch

    cpu_times: list[float] = []
    sys_times: list[float] = []
    faults: list[int] = []

    def timed(fn: Callable[[], None]) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        cpu_times.append(time.process_time() - c0)
        sys_times.append(r1.ru_stime - r0.ru_stime)
        faults.append(r1.ru_minflt - r0.ru_minflt)
        return dt

    flops = None
    if count_flops:
        from torch.utils.flop_counter import FlopCounterMode

        counter = FlopCounterMode(display=False)
        with counter:
            step()
        flops = counter.get_total_flops()
        warmup -= 1
    for _ in range(max(warmup, 0)):
        timed(step)
    for lst in (cpu_times, sys_times, faults):
        lst.clear()
    times = [timed(step) for _ in range(steps)]
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "times_s": times,
        "median_s": statistics.median(times),
        # process CPU seconds (all threads): on a shared machine, cpu_s / threads is roughly what the
        # step would take with the cores to itself
        "median_cpu_s": statistics.median(cpu_times),
        "cpu_s": cpu_times,
        "step_sys_s": sys_times,
        "step_minor_faults": faults,
        "peak_rss_gib": usage.ru_maxrss / 2**20,  # ru_maxrss is in KiB on Linux
        "major_faults": usage.ru_majflt,
        "minor_faults": usage.ru_minflt,
        "user_s": usage.ru_utime,
        "sys_s": usage.ru_stime,
        "cpu_capability": _cpu_capability(),
        "flops_per_step": flops,
    }


def best_time(fn: Callable[[], Any], reps: int, device: Any = None) -> float:
    """The shortest of ``reps`` timed calls of ``fn`` after one untimed call (kernel choice, allocation),
    synchronising a CUDA device around each."""
    import torch

    sync = torch.cuda.synchronize if device is not None and device.type == "cuda" else (lambda: None)
    fn()
    times = []
    for _ in range(reps):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return min(times)


def ceiling(device: Any, size: int = 4096, reps: int = 5) -> dict[str, float | None]:
    """What this machine (at the ISA and thread count of this process) can compute at best, in GFLOP/s:
    the best of ``reps`` square fp32 matrix products (MKL/cuBLAS run these near the hardware's peak, so no
    model step can run faster per FLOP), the same in bf16 where the hardware has bf16 (else None), and the
    model's densest layer alone: a 3×3 convolution 64→64 channels on 32×64×64, forward + backward, as
    oneDNN/cuDNN run it in the faster memory layout (how far the convolution library is from the ceiling)."""
    import torch

    def best(fn: Callable[[], Any], flops: float) -> float:
        return flops / best_time(fn, reps, device) / 1e9

    from diamond_kedro.utils.precision import cpu_has_native_bf16

    out: dict[str, float | None] = {"matmul_bf16": None}
    # bf16 only where it is computed natively (CUDA, or oneDNN's bf16 kernels): emulated, a 4096² product
    # takes minutes, and no run picks bf16 there (run.amp: auto)
    dtypes = [("matmul_fp32", torch.float32)]
    if device.type == "cuda" or cpu_has_native_bf16():
        dtypes.append(("matmul_bf16", torch.bfloat16))
    for name, dtype in dtypes:
        a = torch.randn(size, size, device=device, dtype=dtype)
        b = torch.randn(size, size, device=device, dtype=dtype)
        out[name] = best(lambda: torch.mm(a, b), 2 * size**3)
        del a, b
    conv_flops = 3 * 2 * 32 * 64 * 64 * 64 * 64 * 9  # forward, grad of the input, grad of the weight
    out["conv3x3_fp32"] = 0.0
    for layout in (torch.contiguous_format, torch.channels_last):  # the faster layout, as a run probes for
        x = torch.randn(32, 64, 64, 64, device=device).to(memory_format=layout).requires_grad_()
        w = torch.randn(64, 64, 3, 3, device=device).to(memory_format=layout).requires_grad_()
        g = torch.ones(32, 64, 64, 64, device=device).to(memory_format=layout)

        def conv() -> None:
            torch.nn.functional.conv2d(x, w, padding=1).backward(g)

        out["conv3x3_fp32"] = max(out["conv3x3_fp32"], best(conv, conv_flops))
    return out


def _cpu_capability() -> str:
    """The SIMD level ATen's kernels dispatch to in this process (honours ATEN_CPU_CAPABILITY)."""
    import torch

    try:
        return torch.backends.cpu.get_cpu_capability()
    except AttributeError:  # older torch
        return "unknown"


def run_component(
    script: str, isa: str, no_tuning: bool, worker_args: list[str], extra_env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run ``script --_worker ...`` in a fresh process (with the ISA limit) and return its JSON result."""
    cmd = [sys.executable, script, "--_worker", *worker_args]
    if no_tuning:
        cmd.append("--no-malloc-tuning")
    return run_json(cmd, isa, extra_env)


def record_steps(args: argparse.Namespace, name: str, summary: list[tuple[str, str, dict]], *, title: str) -> Any:
    """The record of a per-step timing run (shared with bench_actor_critic.py): one row per step and
    malloc mode, every figure the worker measured kept under ``figures.steps``."""
    keys = ("amp", "median_s", "times_s", "median_cpu_s", "peak_rss_gib", "minor_faults", "sys_s", "load", "malloc_tuned")
    steps = [{"step": comp, "malloc": label, **{k: r.get(k) for k in keys}} for comp, label, r in summary]
    config = {k: getattr(args, k, None) for k in ("device", "threads", "isa", "steps", "ac_steps", "warmup", "amp", "preload")}
    table = {"columns": ["step", "malloc", "precision", "median s/step", "peak RSS GiB", "load before→after"],
             "rows": [[s["step"], s["malloc"], "bf16" if s["amp"] else "fp32", s["median_s"], s["peak_rss_gib"],
                       f"{s['load'][0]:.2f}→{s['load'][1]:.2f}"] for s in steps]}
    return maybe_record(args, name, {"config": config, "steps": steps}, title=title, table=table)


def run_json(cmd: list[str], isa: str, extra_env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run a worker command in a fresh process and parse the JSON object on its last stdout line; a failing
    worker raises with the end of its stderr, so the reason is on screen."""
    env = os.environ.copy()
    env.update(ISA_ENV.get(isa, {}))
    env.update(extra_env or {})
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        tail = "\n".join(out.stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"worker failed (exit {out.returncode}): {' '.join(cmd)}\n{tail}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    """``python _worker.py --ceiling [--device cpu|cuda] [--threads N]``: print ``ceiling`` as JSON (run by
    bench_vs_authors.py in a fresh process, under the sitting's ISA limit)."""
    p = argparse.ArgumentParser()
    p.add_argument("--ceiling", action="store_true", required=True)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    torch.backends.cuda.matmul.allow_tf32 = True  # as the timed steps run (setup): fp32 on CUDA means TF32
    torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(0)
    print(json.dumps({"cpu_capability": _cpu_capability(), **ceiling(torch.device(args.device))}))


if __name__ == "__main__":
    main()
