"""The paper's results table from our tracked runs: per-game scores and HNS vs DIAMOND, aggregates, plots.

Input: the training runs in an MLflow experiment (one MLflow run per training run, tagged
``diamond.run_key``; see ``diamond_kedro/hooks.py``). A run's score is its ``final_return_mean`` (mean
return of the final test episodes, the per-seed number the paper reports, spec §6.3); a run that has not
finished falls back to its latest ``test_dataset/return_mean`` and is marked so (``score_source``). Game
and seed come from the logged parameters ``env.game`` and ``run.seed``.

Output (``write_report``): ``runs.csv`` (one row per run), ``per_game.csv`` and ``report.md`` (ours vs the
paper per game, aggregates), ``aggregates.json``, and PNG plots (aggregate intervals, performance
profiles, per-game HNS). The aggregates (mean / median / IQM / optimality gap of HNS with stratified
bootstrap CIs, ``evaluation/scores.py``) are computed for our runs and for DIAMOND's published seeds on
the same games, so the two are comparable, and for DIAMOND on all 26 games (mean 1.459, IQM 0.641).

The rliable statistics need the same number of runs per game; when our games have different numbers
of seeds, each game keeps its ``k`` lowest seeds, k = the smallest count, and ``notes`` says so.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from diamond_kedro.evaluation.scores import (
    AggregateResult,
    aggregate_metrics,
    canonical_game,
    load_reference,
    per_game_table,
    performance_profile,
    plot_aggregates,
    plot_performance_profiles,
    published_scores,
)
from diamond_kedro.utils.atomic import atomic_write_text

log = logging.getLogger(__name__)

RUN_KEY_TAG = "diamond.run_key"  # set on training runs by the MLflow hook
REPORT_TAG = "diamond.report"  # set on report runs, so that they are never read back as training runs
FINAL_METRIC = "final_return_mean"
FALLBACK_METRIC = "test_dataset/return_mean"
OURS, PAPER_SAME, PAPER_ALL = "ours", "DIAMOND (paper, same games)", "DIAMOND (paper, 26 games)"

RUN_COLUMNS = ["run_id", "run_key", "run_name", "game", "seed", "score", "score_source", "epoch", "env_steps",
               "status", "start_time"]


@dataclass
class ReportConfig:
    """``report:`` parameters (``conf/base/parameters_report.yml``). ``None`` tracking settings are filled
    in by the caller from ``conf/base/mlflow.yml``."""

    tracking_uri: str | None = None
    experiment_name: str | None = None
    output_dir: str = "data/08_reporting"
    run_names: list[str] | None = None  # only training runs with these ``run.name`` values (None = all)
    bootstrap_reps: int = 2000
    confidence: float = 0.95
    seed: int = 0
    log_to_mlflow: bool = True
    mlflow_run_name: str = "report"

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> "ReportConfig":
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(params) - known)
        if unknown:
            raise ValueError(f"unknown report parameter(s) {unknown}; known: {sorted(known)}")
        cfg = cls(**dict(params))
        if cfg.bootstrap_reps < 1:
            raise ValueError(f"report.bootstrap_reps must be >= 1, got {cfg.bootstrap_reps}")
        if not 0 < cfg.confidence < 1:
            raise ValueError(f"report.confidence must be in (0, 1), got {cfg.confidence}")
        return cfg


# --------------------------------------------------------------------------------------------
# reading the tracked runs
# --------------------------------------------------------------------------------------------


def _latest_step(client: Any, run_id: str, key: str) -> int | None:
    history = client.get_metric_history(run_id, key)
    return max((m.step for m in history), default=None)


def load_runs(tracking_uri: str, experiment_name: str = "diamond-atari", run_names: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per training run of the experiment (columns ``RUN_COLUMNS``), newest first.

    ``score`` is NaN (``score_source`` None) for a run with neither metric yet. An absent experiment gives
    an empty table. Runs without the ``diamond.run_key`` tag (e.g. report runs) are skipped.
    """
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    experiment = client.get_experiment_by_name(experiment_name)
    rows: list[dict[str, Any]] = []
    if experiment is not None:
        token = None
        while True:
            page = client.search_runs([experiment.experiment_id], max_results=1000, page_token=token,
                                      order_by=["attributes.start_time DESC"])
            for run in page:
                tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
                if RUN_KEY_TAG not in tags or REPORT_TAG in tags:
                    continue
                name = params.get("run.name")
                if run_names is not None and name not in run_names:
                    continue
                if "env.game" not in params or "run.seed" not in params:
                    raise ValueError(
                        f"MLflow run {run.info.run_id} ({tags[RUN_KEY_TAG]}) lacks the parameters env.game / run.seed"
                    )
                if _is_own_game(params["env.game"]):
                    continue  # our own games (Catch) have no human or paper scores to compare with
                source = next((k for k in (FINAL_METRIC, FALLBACK_METRIC) if k in metrics), None)
                rows.append(
                    {
                        "run_id": run.info.run_id,
                        "run_key": tags[RUN_KEY_TAG],
                        "run_name": name,
                        "game": canonical_game(params["env.game"]),
                        "seed": int(params["run.seed"]),
                        "score": metrics[source] if source else math.nan,
                        "score_source": source,
                        "epoch": _latest_step(client, run.info.run_id, source or "epoch"),
                        "env_steps": metrics.get("env_steps", math.nan),
                        "status": run.info.status,
                        "start_time": pd.Timestamp(run.info.start_time, unit="ms"),
                    }
                )
            token = page.token
            if not token:
                break
    return pd.DataFrame(rows, columns=RUN_COLUMNS)


def scores_by_game(runs: pd.DataFrame) -> tuple[dict[str, list[float]], list[str]]:
    """game -> per-seed scores, rectangular (same count per game), and notes on what was left out."""
    notes: list[str] = []
    scored = runs.dropna(subset=["score"])
    if len(scored) < len(runs):
        missing = runs[runs["score"].isna()]["run_key"].tolist()
        notes.append(f"{len(missing)} run(s) without any test score yet, left out: {', '.join(missing)}")
    partial = scored[scored["score_source"] != FINAL_METRIC]
    if len(partial):
        notes.append(
            f"{len(partial)} run(s) without {FINAL_METRIC} (training not over), scored by their latest {FALLBACK_METRIC}: "
            + ", ".join(partial["run_key"].tolist())
        )
    by_game = {g: grp.sort_values(["seed", "run_key"])["score"].tolist() for g, grp in scored.groupby("game")}
    if by_game:
        k = min(len(v) for v in by_game.values())
        if any(len(v) != k for v in by_game.values()):
            notes.append(
                f"games have different numbers of runs ({ {g: len(v) for g, v in sorted(by_game.items())} }); "
                f"aggregates use the {k} lowest seed(s) of each game"
            )
            by_game = {g: v[:k] for g, v in by_game.items()}
    return by_game, notes


# --------------------------------------------------------------------------------------------
# building and writing the report
# --------------------------------------------------------------------------------------------


@dataclass
class Report:
    runs: pd.DataFrame
    per_game: pd.DataFrame  # empty when there is no scored run
    aggregates: dict[str, AggregateResult]  # OURS (if any runs), PAPER_SAME (if any runs), PAPER_ALL
    notes: list[str] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)

    def metrics(self) -> dict[str, float]:
        """Flat metrics for MLflow: ``ours/hns_iqm``, ``paper_same_games/hns_mean``, ``paper/hns_iqm``, ..."""
        prefixes = {OURS: "ours/", PAPER_SAME: "paper_same_games/", PAPER_ALL: "paper/"}
        out: dict[str, float] = {}
        for method, result in self.aggregates.items():
            out.update(result.as_flat_dict(prefix=prefixes[method] + "hns_"))
        if not self.per_game.empty:
            out["ours/num_games"] = float(len(self.per_game))
            out["ours/num_runs"] = float(len(self.runs.dropna(subset=["score"])))
        return out


def build_report(runs: pd.DataFrame, reps: int = 2000, confidence: float = 0.95, seed: int = 0) -> Report:
    """Per-game table and aggregates (ours, the paper on the same games, the paper on all games)."""
    scores, notes = scores_by_game(runs)
    table = load_reference()
    paper = published_scores(table)
    kw = dict(reps=reps, confidence=confidence, seed=seed, table=table)
    aggregates: dict[str, AggregateResult] = {}
    per_game = pd.DataFrame()
    if scores:
        all_scored = runs.dropna(subset=["score"])
        per_game = per_game_table({g: grp["score"].tolist() for g, grp in all_scored.groupby("game")}, table=table)
        aggregates[OURS] = aggregate_metrics(scores, **kw)
        aggregates[PAPER_SAME] = aggregate_metrics({g: paper[g] for g in scores}, **kw)
    aggregates[PAPER_ALL] = aggregate_metrics(paper, **kw)
    return Report(runs=runs, per_game=per_game, aggregates=aggregates, notes=notes)


def _fmt(x: Any, digits: int = 3) -> str:
    if isinstance(x, (float, np.floating)):
        return "" if math.isnan(x) else f"{x:.{digits}f}"
    return str(x)


def markdown_table(df: pd.DataFrame, digits: int = 3) -> str:
    """A GitHub-flavoured markdown table (index as the first column)."""
    cols = [df.index.name or ""] + [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join(["---"] + ["---:"] * len(df.columns)) + "|"]
    for row in df.itertuples(index=True, name=None):  # keeps each column's dtype (iterrows would upcast)
        lines.append("| " + " | ".join([str(row[0])] + [_fmt(v, digits) for v in row[1:]]) + " |")
    return "\n".join(lines)


def aggregates_frame(aggregates: Mapping[str, AggregateResult]) -> pd.DataFrame:
    """Rows = methods, columns = ``mean``, ``mean_ci`` ... (point estimate, ``[low, high]``)."""
    rows = {}
    for method, res in aggregates.items():
        row: dict[str, Any] = {"games": len(res.games), "runs_per_game": res.num_runs}
        for name, est in res.estimates.items():
            row[name] = est.point
            row[f"{name}_ci"] = f"[{est.low:.3f}, {est.high:.3f}]"
        row["superhuman_games"] = len(res.superhuman)
        rows[method] = row
    df = pd.DataFrame.from_dict(rows, orient="index")
    df.index.name = "method"
    return df


def plot_per_game_hns(per_game: pd.DataFrame, path: str | Path) -> Path:
    """Horizontal bars of HNS per game, ours next to the paper's; the human level (HNS = 1) dashed."""
    from matplotlib.figure import Figure

    from diamond_kedro.evaluation.scores import _save_figure_atomic

    games = list(per_game.index)
    y = np.arange(len(games))
    fig = Figure(figsize=(6, 0.8 + 0.45 * len(games)))
    ax = fig.subplots()
    ax.barh(y - 0.2, per_game["hns"], height=0.4, color="C0", label="ours")
    ax.barh(y + 0.2, per_game["paper_hns"], height=0.4, color="C1", alpha=0.75, label="DIAMOND (paper)")
    ax.axvline(1.0, color="gray", linestyle="--", linewidth=0.8)
    ax.set_yticks(y, games)
    ax.invert_yaxis()
    ax.set_xlabel("Human-normalised score (mean over seeds)")
    ax.legend(loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    return _save_figure_atomic(fig, path)


def write_report(report: Report, output_dir: str | Path, reps: int = 2000, confidence: float = 0.95, seed: int = 0) -> dict[str, Path]:
    """Write the tables, JSON and plots under ``output_dir``; returns {name: path} (also in ``report.files``)."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}

    runs_csv = out / "runs.csv"
    atomic_write_text(runs_csv, report.runs.to_csv(index=False))
    files["runs"] = runs_csv
    agg_df = aggregates_frame(report.aggregates)
    files["aggregates_csv"] = out / "aggregates.csv"
    atomic_write_text(files["aggregates_csv"], agg_df.to_csv())
    summary = {
        "confidence": confidence,
        "bootstrap_reps": reps,
        "notes": report.notes,
        "aggregates": {
            m: {
                "games": list(r.games),
                "runs_per_game": r.num_runs,
                "superhuman": list(r.superhuman),
                "estimates": {k: {"point": e.point, "low": e.low, "high": e.high} for k, e in r.estimates.items()},
            }
            for m, r in report.aggregates.items()
        },
    }
    if not report.per_game.empty:
        files["per_game_csv"] = out / "per_game.csv"
        atomic_write_text(files["per_game_csv"], report.per_game.to_csv())
        summary["per_game"] = json.loads(report.per_game.reset_index().to_json(orient="records"))
        files["per_game_png"] = plot_per_game_hns(report.per_game, out / "per_game_hns.png")
    files["json"] = out / "aggregates.json"
    atomic_write_text(files["json"], json.dumps(summary, indent=2))

    files["aggregates_png"] = plot_aggregates(report.aggregates, out / "aggregates.png")
    profiles = {}
    paper = published_scores()
    for method, res in report.aggregates.items():
        scores = (
            scores_by_game(report.runs)[0] if method == OURS else {g: paper[g] for g in res.games}
        )
        profiles[method] = performance_profile(scores, reps=reps, confidence=confidence, seed=seed)
    files["profiles_png"] = plot_performance_profiles(profiles, out / "performance_profiles.png")

    lines = ["# DIAMOND on Atari 100k: our runs vs the paper", ""]
    if report.per_game.empty:
        lines += ["No tracked run has a test score yet; only the paper's aggregates are shown.", ""]
    else:
        n = len(report.runs.dropna(subset=["score"]))
        lines += [f"{n} run(s) on {len(report.per_game)} game(s). HNS = (score - random) / (human - random).", ""]
        lines += ["## Per game", "", markdown_table(report.per_game), ""]
    lines += [f"## Aggregate human-normalised scores ({confidence:.0%} stratified-bootstrap CIs, {reps} reps)", ""]
    lines += [markdown_table(agg_df), ""]
    if report.notes:
        lines += ["## Notes", ""] + [f"- {note}" for note in report.notes] + [""]
    files["markdown"] = out / "report.md"
    atomic_write_text(files["markdown"], "\n".join(lines))
    report.files = files
    return files


# --------------------------------------------------------------------------------------------
# logging the report to MLflow
# --------------------------------------------------------------------------------------------


def log_report(
    report: Report,
    tracking_uri: str,
    experiment_name: str = "diamond-atari",
    run_name: str = "report",
    artifact_location: str | None = None,
) -> str:
    """Log the report's metrics and files as a new MLflow run ``run_name`` tagged ``diamond.report``
    (never mistaken for a training run). Returns the MLflow run id."""
    from diamond_kedro.reporting import tracked_experiment

    location = Path(artifact_location).resolve().as_uri() if artifact_location else None
    client, experiment_id = tracked_experiment(tracking_uri, experiment_name, location)
    run = client.create_run(experiment_id, run_name=run_name, tags={REPORT_TAG: "true"})
    run_id = run.info.run_id
    try:
        from mlflow.entities import Metric

        ts = int(pd.Timestamp.now().timestamp() * 1000)
        metrics = [Metric(k, float(v), ts, 0) for k, v in report.metrics().items() if math.isfinite(v)]
        for i in range(0, len(metrics), 500):
            client.log_batch(run_id, metrics=metrics[i : i + 500])
        for path in report.files.values():
            client.log_artifact(run_id, str(path), artifact_path="report")
    except BaseException:
        client.set_terminated(run_id, status="FAILED")
        raise
    client.set_terminated(run_id, status="FINISHED")
    return run_id


def _is_own_game(name: str) -> bool:
    """True for the project's own small games (``diamond_kedro.envs.atari.CUSTOM_GAMES``), not Atari ones."""
    from diamond_kedro.envs.atari import CUSTOM_GAMES

    stem = name.strip().lower()
    return any(stem in (short.lower(), env_id.lower()) for short, env_id in CUSTOM_GAMES.items())
