"""Evaluation return vs epoch and vs wall time of one training run, from MLflow, as a small PNG.

    python benchmarks/plot_learning_curve.py --run-key Catch_seed0_catch --out docs/catch_learning_curve.png \
        --optimum 10 --random 2.5
    python benchmarks/plot_learning_curve.py --tracking-uri sqlite:////path/to/mlflow.db --run-key ...

Reads ``test_dataset/return_mean`` (logged at step = epoch by every evaluation) and the run's cumulative
``<component>/wall_time_s`` to place each evaluation in wall time; draws the optimum and the random level
when given. Writes atomically (temp file + rename).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

WALL_KEYS = ("collect", "denoiser", "rew_end_model", "actor_critic", "evaluate")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    p.add_argument("--experiment", default="diamond-atari")
    p.add_argument("--run-key", required=True, help="e.g. Catch_seed0_catch (<Game>_seed<seed>_<run.name>)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--optimum", type=float, default=None)
    p.add_argument("--random", type=float, default=None)
    p.add_argument("--title", default=None)
    args = p.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=args.tracking_uri)
    exp = client.get_experiment_by_name(args.experiment)
    if exp is None:
        p.error(f"no MLflow experiment {args.experiment!r} in {args.tracking_uri}")
    runs = client.search_runs(
        [exp.experiment_id], filter_string=f"tags.`diamond.run_key` = '{args.run_key}'", order_by=["attributes.start_time DESC"]
    )
    if not runs:
        p.error(f"no MLflow run tagged diamond.run_key={args.run_key!r} in {args.tracking_uri}")
    run_id = runs[0].info.run_id  # the same key in another run.root is another MLflow run: the newest wins
    if len(runs) > 1:
        print(f"{len(runs)} MLflow runs tagged {args.run_key}: plotting the newest, {run_id}")
    ret = sorted((m.step, m.value) for m in client.get_metric_history(run_id, "test_dataset/return_mean"))
    if not ret:
        p.error(f"run {args.run_key} has no test_dataset/return_mean yet")
    # wall time at the end of each epoch: the sum of the per-component times up to that epoch
    per_epoch: dict[int, float] = {}
    for key in WALL_KEYS:
        for m in client.get_metric_history(run_id, f"{key}/wall_time_s"):
            per_epoch[m.step] = per_epoch.get(m.step, 0.0) + m.value
    cum, total = {}, 0.0
    for epoch in sorted(per_epoch):
        total += per_epoch[epoch]
        cum[epoch] = total / 60

    fig, axes = plt.subplots(1, 2, figsize=(8, 3), dpi=90, sharey=True)
    epochs, values = [e for e, _ in ret], [v for _, v in ret]
    axes[0].plot(epochs, values, "o-", ms=3)
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("evaluation return")
    if cum:
        axes[1].plot([cum.get(e, float("nan")) for e in epochs], values, "o-", ms=3)
    axes[1].set_xlabel("wall time (min, sum of phases)")
    for ax in axes:
        if args.optimum is not None:
            ax.axhline(args.optimum, color="green", ls="--", lw=1, label="optimum")
            ax.axhline(0.9 * args.optimum, color="green", ls=":", lw=1, label="90 % of optimum")
        if args.random is not None:
            ax.axhline(args.random, color="red", ls="--", lw=1, label="random policy")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="center right")
    fig.suptitle(args.title or f"{args.run_key}: real-env evaluation return", fontsize=10)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=args.out.parent, suffix=".png", delete=False) as f:
        fig.savefig(f, format="png")
    os.replace(f.name, args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KB): {len(ret)} evaluations, last {values[-1]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
