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


def random_batch(n: int, seq_len: int, device: Any, random_rewards: bool = False, size: int = 64) -> Any:
    """n real segments of random frames and actions (rewards in {-1, 0, 1} if asked)."""
    import torch

    from diamond_kedro.replay.batch import Batch

    rew = torch.randint(-1, 2, (n, seq_len)).float() if random_rewards else None
    obs = torch.rand(n, seq_len, 3, size, size) * 2 - 1
    return Batch.of(obs, torch.randint(0, NUM_ACTIONS, (n, seq_len)), rew).to(device)


def measure(device: Any, step: Callable[[], None], warm: Callable[[], None], warmup: int, steps: int) -> dict[str, Any]:
    """Wall and process-CPU seconds of ``steps`` calls of ``step`` after ``warmup`` calls of ``warm``,
    with peak RSS and page-fault counts of the process."""
    import torch

    cpu_times: list[float] = []

    def timed(fn: Callable[[], None]) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        cpu_times.append(time.process_time() - c0)
        return time.perf_counter() - t0

    for _ in range(warmup):
        timed(warm)
    cpu_times.clear()
    times = [timed(step) for _ in range(steps)]
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "times_s": times,
        "median_s": statistics.median(times),
        # process CPU seconds (all threads): on a shared machine, cpu_s / threads is roughly what the
        # step would take with the cores to itself
        "median_cpu_s": statistics.median(cpu_times),
        "peak_rss_gib": usage.ru_maxrss / 2**20,  # ru_maxrss is in KiB on Linux
        "major_faults": usage.ru_majflt,
        "minor_faults": usage.ru_minflt,
        "user_s": usage.ru_utime,
        "sys_s": usage.ru_stime,
    }


def run_component(script: str, isa: str, no_tuning: bool, worker_args: list[str]) -> dict[str, Any]:
    """Run ``script --_worker ...`` in a fresh process (with the ISA limit) and return its JSON result."""
    cmd = [sys.executable, script, "--_worker", *worker_args]
    if no_tuning:
        cmd.append("--no-malloc-tuning")
    env = os.environ.copy()
    env.update(ISA_ENV.get(isa, {}))
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])
