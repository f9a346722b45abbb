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
    from diamond_kedro.utils.precision import resolve_amp

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


def measure(device: Any, step: Callable[[], None], warm: Callable[[], None], warmup: int, steps: int) -> dict[str, Any]:
    """Wall and process-CPU seconds of ``steps`` calls of ``step`` after ``warmup`` calls of ``warm``,
    with the system time and minor page faults of the timed steps alone (first-touch faults of the warm-up
    are a one-off per process), and peak RSS and totals of the process."""
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

    for _ in range(warmup):
        timed(warm)
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
    }


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
