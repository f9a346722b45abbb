"""Real-env throughput: agent steps/s of TorchAtariEnv (1 env and vectorised) and of the Collector
including replay-store writes.

    .venv/bin/python benchmarks/bench_env.py                      # Breakout, 1/8/16 envs
    .venv/bin/python benchmarks/bench_env.py --game Pong --envs 1,4 --steps 3000

One agent step = 4 emulator frames + max-pool + 64×64 resize. Actions are uniform random, so games
run through their normal cycles (life losses, resets). Reference (ECOSYSTEM.md, this machine type):
≈ 670 agent steps/s for one env with gymnasium's per-frame ``step`` path.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from _record import add_record_argument, maybe_record
from diamond_kedro.envs.atari import make_atari_env
from diamond_kedro.envs.collector import Collector
from diamond_kedro.replay.store import ReplayStore


def bench_env(game: str, num_envs: int, steps: int, vectorization: str) -> float:
    env = make_atari_env(game, num_envs, done_on_life_loss=True, seed=0, vectorization=vectorization)
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    for _ in range(20):  # warm-up (worker start, first allocations)
        env.step(torch.from_numpy(rng.integers(env.num_actions, size=num_envs)))
    iters = max(1, steps // num_envs)
    t0 = time.perf_counter()
    for _ in range(iters):
        env.step(torch.from_numpy(rng.integers(env.num_actions, size=num_envs)))
    dt = time.perf_counter() - t0
    env.close()
    return iters * num_envs / dt


def bench_collector(game: str, steps: int, steps_per_call: int, policy: torch.nn.Module | None) -> float:
    with tempfile.TemporaryDirectory() as d:
        store = ReplayStore(Path(d) / "train")
        env = make_atari_env(game, 1, done_on_life_loss=True, seed=0)
        col = Collector(env, store, policy=policy, epsilon=0.01, seed=0)
        col.collect(num_steps=steps_per_call)  # warm-up
        t0 = time.perf_counter()
        n = 0
        epoch = 1
        while n < steps:
            n += col.collect(num_steps=steps_per_call, epoch=epoch).num_steps
            epoch += 1
        dt = time.perf_counter() - t0
        env.close()
        return n / dt


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--game", default="Breakout")
    p.add_argument("--envs", default="1,8,16", help="comma-separated sub-env counts")
    p.add_argument("--steps", type=int, default=4000, help="agent steps per measurement")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--actor-critic", action="store_true", help="also time the collector with the paper-sized actor-critic")
    add_record_argument(p)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    rows = []
    for n in (int(x) for x in args.envs.split(",")):
        modes = ["sync"] if n == 1 else ["sync", "async"]
        for mode in modes:
            sps = bench_env(args.game, n, args.steps, mode)
            print(f"env {args.game} num_envs={n:<3d} {mode:<5s}: {sps:8.0f} agent steps/s")
            rows.append({"what": "env", "num_envs": n, "mode": mode, "policy": "random", "steps_per_s": sps})

    sps = bench_collector(args.game, args.steps, 100, None)
    print(f"collector (random policy, 100 steps/call, store writes): {sps:8.0f} steps/s")
    rows.append({"what": "collector", "num_envs": 1, "mode": "sync", "policy": "random", "steps_per_s": sps})
    if args.actor_critic:
        from diamond_kedro.models.actor_critic import ActorCritic, ActorCriticConfig

        ac = ActorCritic(ActorCriticConfig(num_actions=make_atari_env(args.game).num_actions)).eval()
        sps = bench_collector(args.game, min(args.steps, 1000), 100, ac)
        print(f"collector (actor-critic policy on CPU, 100 steps/call):  {sps:8.0f} steps/s")
        rows.append({"what": "collector", "num_envs": 1, "mode": "sync", "policy": "actor-critic", "steps_per_s": sps})
    env_record(args, rows)


def env_record(args: argparse.Namespace, rows: list[dict]):
    """The record of one run (``--record DIR``): agent steps/s per env setting and of the collector."""
    table = {"columns": ["what", "sub-envs", "mode", "policy", "agent steps/s"],
             "rows": [[r["what"], r["num_envs"], r["mode"], r["policy"], r["steps_per_s"]] for r in rows]}
    config = {"game": args.game, "steps": args.steps, "threads": args.threads}
    return maybe_record(args, "env", {"config": config, "rows": rows}, table=table,
                        title=f"Real-env throughput ({args.game})")


if __name__ == "__main__":
    main()
