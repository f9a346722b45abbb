"""Median wall time per step of every model step at the paper configuration (batch 32, 64×64, A=4).

    python benchmarks/bench_models.py                       # all 6 steps incl. the actor-critic ones (~4 min)
    python benchmarks/bench_models.py --component denoiser_train --steps 3 --warmup 1
    python benchmarks/bench_models.py --compare-malloc      # each step with and without malloc tuning
    python benchmarks/bench_models.py --isa avx2            # restrict oneDNN/ATen/MKL to AVX2 (see below)
    python benchmarks/bench_models.py --device cuda

Each step runs in a fresh subprocess (so allocator settings and peak RSS are per step); the
actor-critic steps (imagination_step, ac_update) come from bench_actor_critic.py. The summary prints
our medians with the 1-minute load average before and after each step: above ~2.3 on a 2-core machine
another process competed, and with 2 OpenMP threads that can slow a step several-fold — rerun.
Ratios against the authors' code come only from ``bench_vs_authors.py``, which runs both in one sitting
(figures from another machine are no baseline).
"""

from __future__ import annotations

import argparse
import json
import os

from _record import add_record_argument
from _worker import ISA_ENV, NUM_ACTIONS, add_amp_argument, autocast, measure, random_batch, record_steps, resolve_worker_amp, run_component, setup

COMPONENTS = ["denoiser_train", "denoiser_sample", "rew_end_train", "wm_env_step"]
AC_COMPONENTS = ["imagination_step", "ac_update"]  # from bench_actor_critic.py


def _worker(args: argparse.Namespace) -> dict:
    torch, device, tuned = setup(args)

    from diamond_kedro.envs.world_model_env import WorldModelEnv, WorldModelEnvConfig
    from diamond_kedro.models.denoiser import Denoiser, DenoiserConfig
    from diamond_kedro.models.diffusion_sampler import DiffusionSampler
    from diamond_kedro.models.rew_end_model import RewEndModel, RewEndModelConfig
    from diamond_kedro.models.unet import InnerModelConfig

    B, A = 32, NUM_ACTIONS
    amp = resolve_worker_amp(args, device)  # bf16 autocast of the forward passes, as run.amp does in a run

    def batch(seq_len: int, n: int = B):
        return random_batch(n, seq_len, device, random_rewards=True)

    def denoiser() -> Denoiser:
        return Denoiser(DenoiserConfig(inner_model=InnerModelConfig(num_actions=A))).to(device)

    def rew_end_model() -> RewEndModel:
        return RewEndModel(RewEndModelConfig(num_actions=A)).to(device)

    def train_step_fn(model, loss_fn, data, max_grad_norm):
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, eps=1e-8, weight_decay=1e-2)

        def step():
            opt.zero_grad(set_to_none=True)
            with autocast(device, amp):
                loss, _ = loss_fn(data)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
            opt.step()

        return step

    c = args.component
    if c == "denoiser_train":
        m = denoiser()
        step = train_step_fn(m, m.compute_loss, batch(6), 1.0)
    elif c == "denoiser_sample":
        sampler = DiffusionSampler(denoiser())
        b = batch(4)

        def step():
            with autocast(device, amp):  # sampling runs inside the actor-critic's autocast in a run
                sampler.sample(b.obs, b.act)

    elif c == "rew_end_train":
        m = rew_end_model()
        step = train_step_fn(m, m.compute_loss, batch(19), 100.0)
    elif c == "wm_env_step":
        env = WorldModelEnv(
            denoiser(), rew_end_model(), lambda n: batch(4, n), WorldModelEnvConfig(num_batches_to_preload=1), num_envs=B
        )
        env.reset()

        def step():
            with autocast(device, amp):
                env.step(torch.randint(0, A, (B,), device=device))

    else:
        raise ValueError(f"unknown component {c!r}")

    return {
        "component": c,
        "malloc_tuned": tuned,
        "device": str(device),
        "threads": args.threads,
        "amp": amp,
        **measure(device, step, args.warmup, args.steps, args.count_flops),
    }


def _run_subprocess(args: argparse.Namespace, component: str, no_tuning: bool) -> dict:
    worker_args = [
        "--component", component, "--steps", str(args.steps), "--warmup", str(args.warmup),
        "--device", args.device, "--threads", str(args.threads), "--amp", args.amp,
    ]
    return run_component(__file__, args.isa, no_tuning, worker_args)


def _run_actor_critic_subprocess(args: argparse.Namespace, component: str, no_tuning: bool) -> dict:
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench_actor_critic.py")
    worker_args = [
        "--component", component, "--steps", str(args.ac_steps), "--warmup", "1",
        "--device", args.device, "--threads", str(args.threads), "--preload", "4", "--amp", args.amp,
    ]
    return run_component(script, args.isa, no_tuning, worker_args)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--component", choices=COMPONENTS + AC_COMPONENTS + ["all"], default="all")
    p.add_argument("--steps", type=int, default=3, help="timed steps (paper config: a few s each on 2 CPU cores)")
    p.add_argument("--ac-steps", type=int, default=1, help="timed actor-critic updates (~30 s each)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--isa", choices=["native", *ISA_ENV], default="native", help="limit kernels to an ISA")
    p.add_argument("--no-malloc-tuning", action="store_true", help="leave glibc malloc at its defaults")
    p.add_argument("--compare-malloc", action="store_true", help="run each component with and without tuning")
    add_amp_argument(p)
    p.add_argument("--count-flops", action="store_true", help="count each step's FLOPs (on the first warm-up call)")
    p.add_argument("--_worker", action="store_true", help=argparse.SUPPRESS)
    add_record_argument(p)
    args = p.parse_args()

    if args._worker:
        print(json.dumps(_worker(args)))
        return

    components = COMPONENTS + AC_COMPONENTS if args.component == "all" else [args.component]
    modes = [False, True] if args.compare_malloc else [args.no_malloc_tuning]
    print(
        f"device={args.device} threads={args.threads} isa={args.isa} steps={args.steps} (ac: {args.ac_steps}) "
        f"warmup={args.warmup} batch=32 64x64 A={NUM_ACTIONS} cpu={_cpu_name()}"
    )
    summary = []
    for comp in components:
        res = {}
        for no_tuning in modes:
            load_before = os.getloadavg()[0]
            run = _run_actor_critic_subprocess if comp in AC_COMPONENTS else _run_subprocess
            r = run(args, comp, no_tuning)
            r["load"] = (load_before, os.getloadavg()[0])
            res[no_tuning] = r
        for no_tuning, r in res.items():
            label = "glibc default" if no_tuning else ("malloc tuned" if r["malloc_tuned"] else "malloc (tuning n/a)")
            line = (
                f"{comp:16s} {label:14s} {'bf16' if r.get('amp') else 'fp32'} median {r['median_s']:7.3f} s  (steps {', '.join(f'{t:.2f}' for t in r['times_s'])})"
                f"  cpu {r['median_cpu_s']:.1f} s  peak RSS {r['peak_rss_gib']:.2f} GiB  minflt {r['minor_faults']:,}"
                f"  sys {r['sys_s']:.1f} s  load {r['load'][0]:.2f}->{r['load'][1]:.2f}"
            )
            print(line, flush=True)
            summary.append((comp, label, r))
        if len(res) == 2:
            print(f"{comp:16s} glibc-default / tuned time ratio = {res[True]['median_s'] / res[False]['median_s']:.2f}x")

    print("\nstep              malloc          ours (s)  load")
    for comp, label, r in summary:
        print(f"{comp:17s} {label:14s} {r['median_s']:9.2f}  {r['load'][0]:.2f}->{r['load'][1]:.2f}")
    record_steps(args, "models", summary, title="Seconds per model step at the paper configuration")


def _cpu_name() -> str:
    flags = ""
    try:
        with open("/proc/cpuinfo") as f:
            info = f.read()
        flags = "avx512" if " avx512f" in info else ("avx2" if " avx2" in info else "")
    except OSError:
        pass
    import platform

    return f"{platform.processor() or platform.machine()} {flags}".strip()


if __name__ == "__main__":
    main()
