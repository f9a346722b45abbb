"""Wall time of the actor-critic phase at the paper configuration (32 envs, horizon 15, 64×64, A=4).

    python benchmarks/bench_actor_critic.py                         # both, tuned malloc, CPU, 2 threads
    python benchmarks/bench_actor_critic.py --component ac_update --steps 1
    python benchmarks/bench_actor_critic.py --compare-malloc        # with and without glibc malloc tuning
    python benchmarks/bench_actor_critic.py --device cuda --steps 5

Components (each in a fresh subprocess, random weights, synthetic contexts):
  imagination_step  one ``RolloutLoop.run(1)`` under no_grad: actor forward + world-model env step
                    (3 Euler denoiser steps, reward/end model, resets of dead rows) + the bootstrap forward.
  ac_update         one actor-critic training step: 15-step imagined rollout of 32 envs with gradient
                    through the actor-critic, λ-returns + loss, backward, clip 100, AdamW step.

A paper-config imagination step takes seconds on 2 cores: keep --steps small. Ratios against the
authors' code: ``bench_vs_authors.py`` (both in one sitting). ``python benchmarks/bench_models.py`` runs these two as well, after
the world-model steps, and prints one summary table.
"""

from __future__ import annotations

import argparse
import json
import os

from _record import add_record_argument
from _worker import ISA_ENV, NUM_ACTIONS, add_amp_argument, autocast, measure, random_batch, record_steps, resolve_worker_amp, run_component, setup

COMPONENTS = ["imagination_step", "ac_update"]


def _worker(args: argparse.Namespace) -> dict:
    torch, device, tuned = setup(args)

    from diamond_kedro.envs.world_model_env import WorldModelEnv, WorldModelEnvConfig
    from diamond_kedro.models.actor_critic import ActorCritic, ActorCriticConfig
    from diamond_kedro.models.denoiser import Denoiser, DenoiserConfig
    from diamond_kedro.models.rew_end_model import RewEndModel, RewEndModelConfig
    from diamond_kedro.models.unet import InnerModelConfig
    from diamond_kedro.training.imagination import RolloutLoop, actor_critic_loss
    from diamond_kedro.training.optim import make_optimizer, make_warmup_scheduler, optimizer_step

    N, A, L = 32, NUM_ACTIONS, 4
    amp = resolve_worker_amp(args, device)  # as run.amp in a run: the whole imagined rollout and loss under autocast

    def contexts(n: int):
        return random_batch(n, L, device)

    denoiser = Denoiser(DenoiserConfig(inner_model=InnerModelConfig(num_actions=A))).to(device).eval()
    rew_end_model = RewEndModel(RewEndModelConfig(num_actions=A)).to(device).eval()
    actor_critic = ActorCritic(ActorCriticConfig(num_actions=A)).to(device)
    env = WorldModelEnv(
        denoiser, rew_end_model, contexts, WorldModelEnvConfig(num_batches_to_preload=args.preload), num_envs=N
    )
    loop = RolloutLoop(env, actor_critic, epsilon=0.0)
    opt = make_optimizer(actor_critic, lr=1e-4, weight_decay=0.0, eps=1e-8)
    sched = make_warmup_scheduler(opt, warmup_steps=100)

    def ac_update(horizon: int) -> None:
        with autocast(device, amp):
            loss, _ = actor_critic_loss(loop.run(horizon), gamma=0.985, lambda_=0.95)
        optimizer_step(actor_critic, opt, sched, loss, max_grad_norm=100.0)

    if args.component == "imagination_step":

        def step() -> None:
            with torch.no_grad(), autocast(device, amp):
                loop.run(1)

    elif args.component == "ac_update":

        def step() -> None:  # warmed up with a whole update too: a shorter chunk leaves the heap's growth
            ac_update(15)  # to the timed one (system time an epoch of 400 updates does not pay)

    else:
        raise ValueError(f"unknown component {args.component!r}")

    loop.reset()  # reward-model burn-in of the first contexts, not timed
    return {
        "component": args.component,
        "malloc_tuned": tuned,
        "amp": amp,
        **measure(device, step, args.warmup, args.steps, args.count_flops),
        "num_context_refills": env.contexts.num_refills,
    }


def _run_subprocess(args: argparse.Namespace, component: str, no_tuning: bool) -> dict:
    worker_args = [
        "--component", component, "--steps", str(args.steps), "--warmup", str(args.warmup),
        "--device", args.device, "--threads", str(args.threads), "--preload", str(args.preload),
        "--amp", args.amp,
    ]
    return run_component(__file__, args.isa, no_tuning, worker_args)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--component", choices=COMPONENTS + ["all"], default="all")
    p.add_argument("--steps", type=int, default=1, help="timed steps (ac_update ≈ a minute on 2 CPU cores)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--preload", type=int, default=4, help="context batches per refill (paper: 256)")
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

    components = COMPONENTS if args.component == "all" else [args.component]
    modes = [False, True] if args.compare_malloc else [args.no_malloc_tuning]
    print(
        f"device={args.device} threads={args.threads} steps={args.steps} warmup={args.warmup} "
        f"envs=32 horizon=15 64x64 A={NUM_ACTIONS} preload={args.preload} isa={args.isa}"
    )
    summary = []
    for comp in components:
        res = {}
        for no_tuning in modes:
            load_before = os.getloadavg()[0]  # 1-min load: above ~2.3 on 2 cores, another process competed
            res[no_tuning] = _run_subprocess(args, comp, no_tuning)
            res[no_tuning]["load"] = (load_before, os.getloadavg()[0])
        for no_tuning, r in res.items():
            label = "glibc default" if no_tuning else ("malloc tuned" if r["malloc_tuned"] else "malloc (n/a)")
            line = (
                f"{comp:16s} {label:13s} median {r['median_s']:8.3f} s  (steps {', '.join(f'{t:.2f}' for t in r['times_s'])})"
                f"  cpu {r['median_cpu_s']:.1f} s  peak RSS {r['peak_rss_gib']:.2f} GiB  minflt {r['minor_faults']:,}  sys {r['sys_s']:.1f} s"
                f"  load {r['load'][0]:.2f}->{r['load'][1]:.2f}"
            )
            print(line, flush=True)
            summary.append((comp, label, r))
        if len(res) == 2:
            print(f"{comp:16s} glibc-default / tuned time ratio = {res[True]['median_s'] / res[False]['median_s']:.2f}x")
    record_steps(args, "actor_critic", summary, title="Seconds per actor-critic step at the paper configuration")


if __name__ == "__main__":
    main()
