"""Wall time of whole epochs, split by component (collect / denoiser / rew_end_model / actor_critic / evaluate).

Runs epochs of a fresh run with a Kedro profile's parameters (default: quick) in a temporary folder with
``AtariRun.run_epoch`` (the phases that the ``atari_epoch`` pipeline runs as separate nodes), and prints the
split of each epoch. Epoch 1 includes the initial collection and the long first training; later epochs are
the steady state.

Besides the phases it splits out what is not model math: ``data`` (drawing segments from the replay store,
``SegmentSampler.sample``, inside the training phases), ``checkpoint`` (the atomic ``state.pt``, agent
versions and DVC metrics of the commit) and ``mlflow`` (the epoch's report logged into a throw-away SQLite
MLflow store by the project's own tracking hook, as ``kedro run`` does; ``--no-mlflow`` leaves it out).
``overhead`` = data + checkpoint + mlflow + whatever no phase covers; its share of the epoch is the figure
to keep small. Real-env stepping (``collect``, ``evaluate``) is the task's own work and shown apart.

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

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/_record.py
from _record import add_record_argument, maybe_record  # noqa: E402

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
    parser.add_argument("--no-mlflow", action="store_true", help="do not log the reports to MLflow")
    add_record_argument(parser)
    args = parser.parse_args()

    os.environ.setdefault("TQDM_DISABLE", "1")  # progress bars would interleave with the table
    overrides = [p for p in args.params.split(",") if p]
    with tempfile.TemporaryDirectory() as tmp:
        params = load_parameters(args.env, overrides + [f"run.root={tmp}"])
        params.setdefault("evaluate", {})
        cfg = parse_config({k: v for k, v in params.items() if k not in ("csgo", "report")})
        print(f"profile {args.env}: {cfg.env.game}, device {cfg.run.device}, threads {cfg.run.num_threads}, "
              f"load average {os.getloadavg()[0]:.2f}")
        timers = {"data": 0.0, "checkpoint": 0.0, "mlflow": 0.0}
        restore = instrument(timers)
        hook = None if args.no_mlflow else mlflow_sink(Path(tmp), timers)
        cols = (*PHASES, "data", "checkpoint", "mlflow")
        print(f"{'epoch':>5} " + " ".join(f"{p:>13}" for p in cols) + f" {'total':>9} {'overhead':>9} {'env steps':>9}")
        rows: list[list] = []
        run = AtariRun.open(cfg)
        try:
            for _ in range(args.epochs):
                for k in timers:
                    timers[k] = 0.0
                start = time.perf_counter()
                report = run.run_epoch()
                total = time.perf_counter() - start
                cells = [report.metrics.get(f"{p}/wall_time_s", 0.0) for p in PHASES]
                commit = timers.pop("commit_s")
                timers["checkpoint"] = commit - timers["mlflow"]
                uncovered = total - sum(cells) - commit
                overhead = timers["data"] + commit + uncovered
                print(f"{report.epoch:>5} " + " ".join(f"{c:>12.1f}s" for c in (*cells, *timers.values()))
                      + f" {total:>8.1f}s {100 * overhead / total:>8.1f}% {run.counters.env_steps:>9d}", flush=True)
                rows.append([report.epoch, *(round(c, 2) for c in (*cells, *timers.values())), round(total, 2),
                             f"{100 * overhead / total:.1f} %", run.counters.env_steps])
                if run.is_over:
                    break
        finally:
            run.close()
            restore()
            if hook is not None:
                hook.after_pipeline_run()
        print("overhead = data + checkpoint + mlflow + time outside every phase, as a share of the epoch's wall time")
        table = {"columns": ["epoch", *(f"{c} (s)" for c in cols), "total (s)", "overhead", "env steps"], "rows": rows}
        maybe_record(args, f"epoch_{args.env}", {"profile": args.env, "params": args.params, "rows": rows},
                     title=f"Whole {args.env}-profile epochs, split by component", table=table)


def timed(fn, timers: dict[str, float], key: str):
    """``fn`` wrapped so that its wall time adds up in ``timers[key]``."""

    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            timers[key] = timers.get(key, 0.0) + time.perf_counter() - t0

    return wrapper


def instrument(timers: dict[str, float]):
    """Time ``SegmentSampler.sample`` (into timers['data']) and ``AtariRun.commit`` (into timers['commit_s'])."""
    from diamond_kedro.replay.sampler import SegmentSampler

    sample, commit = SegmentSampler.sample, AtariRun.commit
    SegmentSampler.sample, AtariRun.commit = timed(sample, timers, "data"), timed(commit, timers, "commit_s")

    def restore() -> None:
        SegmentSampler.sample, AtariRun.commit = sample, commit

    return restore


def mlflow_sink(tmp: Path, timers: dict[str, float]):
    """The project's MLflow hook, pointed at a throw-away SQLite store, its logging timed into timers['mlflow']."""
    from types import SimpleNamespace

    from diamond_kedro.hooks import MlflowTrackingHook
    from diamond_kedro.pipelines.atari_epoch import create_pipeline
    from diamond_kedro.reporting import add_sink, remove_sink

    hook = MlflowTrackingHook()
    conf = {"tracking_uri": f"sqlite:///{tmp / 'mlflow.db'}", "artifact_location": str(tmp / "mlruns"),
            "experiment_name": "bench-epoch", "enabled": True, "register_models": True}
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    hook.after_context_created(SimpleNamespace(config_loader={"mlflow": conf}))
    hook.before_pipeline_run({}, create_pipeline(), None)
    remove_sink(hook._log)
    hook._log = timed(hook._log, timers, "mlflow")  # after_pipeline_run removes this sink
    add_sink(hook._log)
    return hook

if __name__ == "__main__":
    main()
