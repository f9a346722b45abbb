"""RL in imagination against a known optimum: does our actor-critic training learn? (figures, not pass/fail)

The actor-critic is trained with our ``RolloutLoop`` and ``actor_critic_loss`` inside a world-model env
whose denoiser and reward/end model are replaced by the rules of Catch
(``diamond_kedro.envs.scripted.ScriptedCatchWorldModelEnv``), then played in the real Catch game
(``diamond_kedro/Catch-v0``: 10 balls per game, optimum 10; a ball-blind policy scores 2.5 on average,
exactly Binomial(10, 1/4)). Printed per evaluation: updates, imagined reward per step (optimum 0.25,
ball-blind 0.0625), mean real-game return over ``--episodes`` games, and the wall time.

    python benchmarks/bench_learning_rl.py                              # default size (300 updates), minutes
    python benchmarks/bench_learning_rl.py --updates 200 --eval-every 50
    python benchmarks/bench_learning_rl.py --broken flip-advantage      # must NOT learn
    python benchmarks/bench_learning_rl.py --broken lambda-index        # λ-returns shifted by one step
    python benchmarks/bench_learning_rl.py --seeds 0 1 2 --json out.json
    python benchmarks/bench_learning_rl.py --gamma 0.985                # the paper's discount
    python benchmarks/bench_learning_rl.py --authors /path/to/diamond-main --gamma 0.985 --seeds 0 1

``--authors DIR`` (an export of eloialonso/diamond, kept outside this project) also trains the AUTHORS'
actor-critic (their ``ActorCritic``, their ``env_loop`` coroutine and their loss with their
``compute_lambda_returns``) in the same scripted env, from the same initial weights, with the same
optimiser and the same evaluation, and prints both side by side. Their loop's action sampling is
aligned with ours (one ``torch.multinomial`` per step, without replacement, as ``RolloutLoop`` draws),
so both codes see the same imagined trajectories until float rounding makes a sampled action differ;
the loss of the first updates is printed for both, which checks our rollout + λ-return + loss against
theirs number for number, and the curves after that show whether they learn alike.

``--broken`` (see ``diamond_kedro.training.scripted_check``): ``flip-advantage`` flips the sign of the
advantage in the policy-gradient term; ``lambda-index`` uses G_{t+1} as the target of step t.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/_record.py
from _record import add_record_argument, maybe_record  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--updates", type=int, default=300, help="actor-critic updates per seed (default 300)")
    p.add_argument("--eval-every", type=int, default=50, help="updates between real-game evaluations")
    p.add_argument("--episodes", type=int, default=20, help="real Catch games per evaluation")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--broken", choices=["flip-advantage", "lambda-index"], default=None)
    p.add_argument("--num-envs", type=int, default=32, help="imagined envs per update (paper 32)")
    p.add_argument("--horizon", type=int, default=15, help="imagination horizon (paper 15)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--gamma", type=float, default=0.5, help="discount (paper 0.985; see README for why 0.5 here)")
    p.add_argument("--lambda", dest="lambda_", type=float, default=0.95, help="λ of the λ-returns (paper 0.95)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", type=Path, default=None, help="also write all figures to this JSON file")
    p.add_argument("--authors", type=Path, default=None,
                   help="export of eloialonso/diamond (branch main): also train their actor-critic, side by side")
    add_record_argument(p)
    args = p.parse_args(argv)
    if args.updates < 1 or args.episodes < 1 or args.eval_every < 0:
        p.error("--updates and --episodes must be >= 1, --eval-every >= 0")

    os.environ.setdefault("TQDM_DISABLE", "1")
    import numpy as np
    import torch

    from diamond_kedro.envs.catch import random_policy_return_pmf
    from diamond_kedro.utils.layout_probe import cpu_model
    from diamond_kedro.training.scripted_check import NUM_BALLS, CheckConfig, evaluate_in_catch, train_in_scripted_catch

    torch.set_num_threads(args.threads)
    pmf = random_policy_return_pmf(4, NUM_BALLS)
    random_mean = float((np.arange(NUM_BALLS + 1) * pmf).sum())
    measured_random = evaluate_in_catch(None, args.episodes * 5, seed=12345)
    print(f"# CPU: {cpu_model()}, torch threads {args.threads}, device {args.device}")
    print(
        f"# Catch: optimum {NUM_BALLS}; ball-blind policy {random_mean:.2f} exactly "
        f"(uniform random measured: {np.mean(measured_random):.2f} over {len(measured_random)} games)"
    )
    print(f"# variant: {args.broken or 'ours (correct loss)'}; {args.updates} updates x {args.num_envs} envs x horizon {args.horizon}, "
          f"gamma {args.gamma}, lambda {args.lambda_}, lr {args.lr}")
    print(f"{'seed':>4} {'update':>6} {'imag. rew/step':>14} {'return':>7} {'% optimum':>9} {'wall s':>7}")

    out = {"cpu": cpu_model(), "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}, "runs": []}
    finals: list[float] = []
    authors_finals: list[float] = []
    for seed in args.seeds:
        cfg = CheckConfig(
            updates=args.updates,
            num_envs=args.num_envs,
            horizon=args.horizon,
            lr=args.lr,
            gamma=args.gamma,
            lambda_=args.lambda_,
            eval_every=args.eval_every,
            eval_episodes=args.episodes,
            seed=seed,
            broken=args.broken,
            device=args.device,
        )

        def show(row: dict, seed: int = seed) -> None:
            print(
                f"{seed:>4} {row['update']:>6} {row['imagined_reward_per_step']:>14.3f} {row['return_mean']:>7.2f} "
                f"{100 * row['return_mean'] / NUM_BALLS:>8.0f}% {row['seconds']:>7.0f}",
                flush=True,
            )

        losses: list[float] = []
        result = train_in_scripted_catch(cfg, progress=show, on_update=lambda m: losses.append(m["loss_total"]))
        finals.append(result.final_return_mean)
        out["runs"].append({"seed": seed, "code": "ours", "evaluations": result.evaluations, "seconds": result.seconds,
                            "loss_first": losses[:5]})
        if args.authors is not None:
            from _authors_rl import train_authors_in_scripted_catch

            print(f"{'':>4} authors' actor-critic, env loop and loss, same seed, initial weights and optimiser:", flush=True)
            a_losses: list[float] = []
            a_result = train_authors_in_scripted_catch(cfg, args.authors, progress=show, losses=a_losses)
            authors_finals.append(a_result.final_return_mean)
            out["runs"].append({"seed": seed, "code": "authors", "evaluations": a_result.evaluations,
                                "seconds": a_result.seconds, "loss_first": a_losses[:5]})
            print(f"{seed:>4} loss of updates 1-5, ours:    " + " ".join(f"{x:.6f}" for x in losses[:5]))
            print(f"{seed:>4} loss of updates 1-5, authors: " + " ".join(f"{x:.6f}" for x in a_losses[:5]))
            rel = [abs(a - b) / max(abs(b), 1e-12) for a, b in zip(losses, a_losses)]
            apart = next((u + 1 for u, r in enumerate(rel) if r > 1e-4), None)
            print(f"{seed:>4} largest relative loss difference over updates 1-5: {max(rel[:5]):.1e}; "
                  f"first update differing by more than 1e-4: {apart or 'none'}", flush=True)
            out["runs"][-1]["first_update_apart"] = apart
    print(
        f"# final return: {np.mean(finals):.2f} (seeds {args.seeds}: {', '.join(f'{f:.2f}' for f in finals)}) "
        f"vs optimum {NUM_BALLS} and ball-blind {random_mean:.2f}"
    )
    if authors_finals:
        print(f"# final return, authors' code: {np.mean(authors_finals):.2f} "
              f"(seeds {args.seeds}: {', '.join(f'{f:.2f}' for f in authors_finals)})")
    if args.json is not None:
        # atomic: a reader never sees a half-written file
        args.json.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=args.json.parent, delete=False, suffix=".tmp") as f:
            json.dump(out, f, indent=1)
        os.replace(f.name, args.json)
    maybe_record(args, "learning_rl", out, title="RL in imagination against the optimum (scripted Catch)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
