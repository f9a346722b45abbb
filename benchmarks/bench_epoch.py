"""Wall time of whole epochs, split by component (collect / denoiser / rew_end_model / actor_critic / evaluate).

Runs epochs of a fresh run with a Kedro profile's parameters (default: quick) in a temporary folder with
``AtariRun.run_epoch`` (the phases that the ``atari_epoch`` pipeline runs as separate nodes), and prints the
split of each epoch. Epoch 1 includes the initial collection and the long first training; later epochs are
the steady state.

    python benchmarks/bench_epoch.py                 # quick profile, 2 epochs, CPU
    python benchmarks/bench_epoch.py --env base --epochs 1 --params run.device=cuda   # paper config on a GPU
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from kedro.config import OmegaConfigLoader
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from diamond_kedro.config import parse_config  # noqa: E402
from diamond_kedro.training.run import AtariRun  # noqa: E402

PHASES = ("collect", "denoiser", "rew_end_model", "actor_critic", "evaluate")


def load_parameters(env: str, overrides: list[str]) -> dict:
    loader = OmegaConfigLoader(
        str(ROOT / "conf"), base_env="base", default_run_env=env, merge_strategy={"parameters": "soft"}
    )
    params = OmegaConf.create(loader["parameters"])
    if overrides:
        params = OmegaConf.merge(params, OmegaConf.from_dotlist(overrides))
    return OmegaConf.to_container(params, resolve=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="quick", help="Kedro environment (profile)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--params", default="", help="comma-separated dotted overrides, as kedro run --params")
    args = parser.parse_args()

    overrides = [p for p in args.params.split(",") if p]
    with tempfile.TemporaryDirectory() as tmp:
        params = load_parameters(args.env, overrides + [f"run.root={tmp}"])
        params.setdefault("evaluate", {})
        cfg = parse_config({k: v for k, v in params.items() if k not in ("csgo", "report")})
        print(f"profile {args.env}: {cfg.env.game}, device {cfg.run.device}, threads {cfg.run.num_threads}, "
              f"load average {os.getloadavg()[0]:.2f}")
        print(f"{'epoch':>5} " + " ".join(f"{p:>14}" for p in PHASES) + f" {'total':>9} {'env steps':>9}")
        run = AtariRun.open(cfg)
        try:
            for _ in range(args.epochs):
                start = time.perf_counter()
                report = run.run_epoch()
                total = time.perf_counter() - start
                cells = [report.metrics.get(f"{p}/wall_time_s", 0.0) for p in PHASES]
                print(f"{report.epoch:>5} " + " ".join(f"{c:>13.1f}s" for c in cells)
                      + f" {total:>8.1f}s {run.counters.env_steps:>9d}", flush=True)
                if run.is_over:
                    break
        finally:
            run.close()


if __name__ == "__main__":
    main()
