"""Atari 100k scores: human-normalised score (HNS), aggregate metrics with bootstrap CIs, plots.

The protocol follows Agarwal et al. 2021 ("Deep RL at the edge of the statistical precipice", the
`rliable` package), which is how the DIAMOND paper reports its Atari 100k aggregates:

* per run (seed) and game, HNS = (score - random) / (human - random);
* scores are arranged as a (num_runs x num_games) matrix;
* mean   = mean over games of the per-game mean HNS          (`rliable.metrics.aggregate_mean`);
* median = median over games of the per-game mean HNS        (`rliable.metrics.aggregate_median`);
* IQM    = 25 %-trimmed mean of *all* runs x games pooled    (`rliable.metrics.aggregate_iqm`,
           i.e. `scipy.stats.trim_mean(matrix, 0.25, axis=None)`): for DIAMOND's 26 x 5 = 130
           values, the lowest and highest 32 are dropped and the middle 66 averaged -> 0.641,
           the paper's number (a per-game-mean IQM would be a different statistic);
* optimality gap = gamma - mean(min(HNS, gamma)), gamma = 1;
* 95 % confidence intervals from the *stratified* bootstrap: runs are resampled with replacement
  independently within each game (the set of games is fixed), percentile method.

Why the bootstrap is written here rather than called from `rliable.library`: that module imports
`arch`, whose 7.x releases fail to import under pandas 3 (pinned by this project) and whose 8.x
release dropped the `random_state` argument that rliable 1.2 passes. The resampling scheme below
is the one of `rliable.library.StratifiedBootstrap` (task_bootstrap=False, method='percentile'),
and the statistics themselves are rliable's own (`rliable.metrics`, numpy/scipy only).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
from rliable import metrics as rl_metrics

from diamond_kedro.utils.atomic import atomic_write_to

REFERENCE_FILE = "atari100k_reference.json"


# --------------------------------------------------------------------------------------------
# Reference table
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GameReference:
    """Random-agent and human scores of one game, plus DIAMOND's five published per-seed scores."""

    random: float
    human: float
    diamond_seeds: tuple[float, ...]


def _parse_reference(raw: dict, origin: str) -> dict[str, GameReference]:
    if "games" not in raw or not isinstance(raw["games"], dict):
        raise ValueError(f"{origin}: expected a JSON object with a 'games' mapping")
    table: dict[str, GameReference] = {}
    for game, entry in raw["games"].items():
        try:
            ref = GameReference(
                random=float(entry["random"]),
                human=float(entry["human"]),
                diamond_seeds=tuple(float(s) for s in entry.get("diamond_seeds", ())),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{origin}: bad entry for game {game!r}: {exc}") from exc
        if ref.human == ref.random:
            raise ValueError(f"{origin}: game {game!r} has human == random, HNS undefined")
        table[game] = ref
    return table


@lru_cache(maxsize=1)
def _packaged_reference() -> dict[str, GameReference]:
    resource = resources.files("diamond_kedro") / "data" / REFERENCE_FILE
    return _parse_reference(json.loads(resource.read_text(encoding="utf-8")), str(resource))


def load_reference(path: str | os.PathLike | None = None) -> dict[str, GameReference]:
    """Random/human/DIAMOND reference table for the 26 Atari 100k games.

    Default: the copy shipped as package data (`diamond_kedro/data/atari100k_reference.json`,
    whose `"source"` field cites the origin of the numbers).
    """
    if path is None:
        return dict(_packaged_reference())
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read reference scores from {path}: {exc}") from exc
    return _parse_reference(raw, str(path))


def canonical_game(name: str, table: Mapping[str, GameReference] | None = None) -> str:
    """Map 'Breakout', 'breakout', 'BreakoutNoFrameskip-v4' or 'ALE/Breakout-v5' to 'Breakout'."""
    table = _packaged_reference() if table is None else table
    stem = name.strip()
    stem = stem.removeprefix("ALE/")
    for suffix in ("NoFrameskip-v4", "-v5", "-v4", "-v0"):
        stem = stem.removesuffix(suffix)
    lowered = {g.lower(): g for g in table}
    if stem.lower() not in lowered:
        raise ValueError(f"unknown Atari 100k game {name!r}; known games: {', '.join(sorted(table))}")
    return lowered[stem.lower()]


def published_scores(table: Mapping[str, GameReference] | None = None) -> dict[str, list[float]]:
    """DIAMOND's published per-seed final scores (5 per game), game -> list of returns."""
    table = _packaged_reference() if table is None else table
    return {game: list(ref.diamond_seeds) for game, ref in table.items()}


# --------------------------------------------------------------------------------------------
# Human-normalised score
# --------------------------------------------------------------------------------------------


def human_normalized_score(
    game: str, score: float | Sequence[float] | np.ndarray, table: Mapping[str, GameReference] | None = None
) -> float | np.ndarray:
    """HNS = (score - random) / (human - random); 0 = random agent, 1 = human. Vectorised."""
    table = _packaged_reference() if table is None else table
    ref = table[canonical_game(game, table)]
    hns = (np.asarray(score, dtype=np.float64) - ref.random) / (ref.human - ref.random)
    return float(hns) if hns.ndim == 0 else hns


def normalized_score_matrix(
    scores: Mapping[str, Sequence[float]], table: Mapping[str, GameReference] | None = None
) -> tuple[np.ndarray, tuple[str, ...]]:
    """HNS matrix of shape (num_runs, num_games) in rliable's layout, and the game order.

    Every game must have the same number of runs (a rectangular matrix is what the stratified
    bootstrap and the pooled IQM are defined on).
    """
    table = _packaged_reference() if table is None else table
    if not scores:
        raise ValueError("no scores given: expected a mapping game -> list of per-seed returns")
    columns: dict[str, np.ndarray] = {}
    for name, runs in scores.items():
        game = canonical_game(name, table)
        if game in columns:
            raise ValueError(f"game {game!r} given twice (as {name!r})")
        values = np.asarray(runs, dtype=np.float64).reshape(-1)
        if values.size == 0:
            raise ValueError(f"game {name!r} has no runs")
        if not np.all(np.isfinite(values)):
            raise ValueError(f"game {name!r} has non-finite scores: {values.tolist()}")
        columns[game] = human_normalized_score(game, values, table)
    counts = {g: v.size for g, v in columns.items()}
    if len(set(counts.values())) != 1:
        raise ValueError(f"all games need the same number of runs, got {counts}")
    games = tuple(sorted(columns))
    return np.stack([columns[g] for g in games], axis=1), games


def superhuman_games(
    scores: Mapping[str, Sequence[float]], table: Mapping[str, GameReference] | None = None
) -> list[str]:
    """Games whose mean score over runs beats the human reference (mean HNS > 1)."""
    table = _packaged_reference() if table is None else table
    out = []
    for name, runs in scores.items():
        game = canonical_game(name, table)
        if float(np.mean(human_normalized_score(game, np.asarray(runs, dtype=np.float64), table))) > 1.0:
            out.append(game)
    return sorted(out)


# --------------------------------------------------------------------------------------------
# Aggregate metrics with stratified bootstrap confidence intervals
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IntervalEstimate:
    point: float
    low: float
    high: float


@dataclass(frozen=True)
class AggregateResult:
    """Aggregate HNS metrics of one method: point estimates and bootstrap CIs."""

    games: tuple[str, ...]
    num_runs: int
    confidence: float
    estimates: dict[str, IntervalEstimate]  # keys: mean, median, iqm, optimality_gap
    superhuman: tuple[str, ...]

    def as_flat_dict(self, prefix: str = "hns_") -> dict[str, float]:
        """Flat {name: value} view, e.g. for `mlflow.log_metrics`."""
        flat: dict[str, float] = {}
        for name, est in self.estimates.items():
            flat[f"{prefix}{name}"] = est.point
            flat[f"{prefix}{name}_ci_low"] = est.low
            flat[f"{prefix}{name}_ci_high"] = est.high
        flat[f"{prefix}num_superhuman"] = float(len(self.superhuman))
        return flat


def _aggregate_functions(optimality_gamma: float) -> dict[str, Callable[[np.ndarray], float]]:
    return {
        "mean": rl_metrics.aggregate_mean,
        "median": rl_metrics.aggregate_median,
        "iqm": rl_metrics.aggregate_iqm,
        "optimality_gap": lambda m: rl_metrics.aggregate_optimality_gap(m, gamma=optimality_gamma),
    }


def stratified_bootstrap(matrix: np.ndarray, reps: int, rng: np.random.Generator, chunk: int = 1000):
    """Yield bootstrap replicates of a (runs x games) matrix, chunked: arrays (n, runs, games).

    Within each game (stratum) the runs are drawn with replacement; games are never resampled.
    """
    num_runs, num_games = matrix.shape
    cols = np.arange(num_games)
    for start in range(0, reps, chunk):
        n = min(chunk, reps - start)
        idx = rng.integers(0, num_runs, size=(n, num_runs, num_games))
        yield matrix[idx, cols]


def _percentile_interval(samples: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    alpha = 1.0 - confidence
    return np.percentile(samples, 100 * alpha / 2, axis=0), np.percentile(samples, 100 * (1 - alpha / 2), axis=0)


def aggregate_metrics(
    scores: Mapping[str, Sequence[float]],
    *,
    reps: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    optimality_gamma: float = 1.0,
    table: Mapping[str, GameReference] | None = None,
) -> AggregateResult:
    """Mean / median / IQM / optimality gap of HNS with stratified-bootstrap percentile CIs.

    `scores`: game -> list of per-seed returns (any subset of the 26 games, same number of seeds
    each). rliable's default is 50 000 reps; 2000 keeps this cheap inside a pipeline.
    """
    if reps < 1:
        raise ValueError(f"reps must be >= 1, got {reps}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    matrix, games = normalized_score_matrix(scores, table)
    funcs = _aggregate_functions(optimality_gamma)
    points = {name: float(f(matrix)) for name, f in funcs.items()}
    rng = np.random.default_rng(seed)
    samples = np.array(
        [[f(rep) for f in funcs.values()] for block in stratified_bootstrap(matrix, reps, rng) for rep in block]
    )
    low, high = _percentile_interval(samples, confidence)
    estimates = {
        name: IntervalEstimate(points[name], float(low[i]), float(high[i])) for i, name in enumerate(funcs)
    }
    return AggregateResult(
        games=games,
        num_runs=matrix.shape[0],
        confidence=confidence,
        estimates=estimates,
        superhuman=tuple(superhuman_games(scores, table)),
    )


# --------------------------------------------------------------------------------------------
# Performance profiles
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PerformanceProfile:
    """Fraction of runs (pooled over games) with HNS > tau, with bootstrap CI bands."""

    taus: np.ndarray
    profile: np.ndarray
    low: np.ndarray
    high: np.ndarray


def performance_profile(
    scores: Mapping[str, Sequence[float]],
    taus: Sequence[float] | np.ndarray | None = None,
    *,
    reps: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    table: Mapping[str, GameReference] | None = None,
) -> PerformanceProfile:
    """Run-score distribution, as `rliable.library.create_performance_profile` (score distribution
    over all runs and games, stratified-bootstrap CIs); taus default to rliable's Atari grid 0..8."""
    taus = np.linspace(0.0, 8.0, 81) if taus is None else np.asarray(taus, dtype=np.float64)
    matrix, _ = normalized_score_matrix(scores, table)

    def profile_of(m: np.ndarray) -> np.ndarray:  # m: (..., runs, games) -> (..., taus)
        return (m[..., None] > taus).mean(axis=(-3, -2))

    rng = np.random.default_rng(seed)
    samples = np.concatenate([profile_of(block) for block in stratified_bootstrap(matrix, reps, rng)])
    low, high = _percentile_interval(samples, confidence)
    return PerformanceProfile(taus=taus, profile=profile_of(matrix), low=low, high=high)


# --------------------------------------------------------------------------------------------
# Per-game table
# --------------------------------------------------------------------------------------------


def per_game_table(
    ours: Mapping[str, Sequence[float]],
    reference: Mapping[str, Sequence[float]] | None = None,
    table: Mapping[str, GameReference] | None = None,
) -> pd.DataFrame:
    """Our per-game mean/std/HNS next to the paper's (default: DIAMOND's published seeds).

    std is the sample standard deviation over seeds (ddof=1; NaN with a single seed), as in the
    paper's results table.
    """
    table = _packaged_reference() if table is None else table
    reference = published_scores(table) if reference is None else reference
    ref_by_game = {canonical_game(g, table): np.asarray(v, dtype=np.float64) for g, v in reference.items()}
    rows = []
    for name, runs in ours.items():
        game = canonical_game(name, table)
        values = np.asarray(runs, dtype=np.float64).reshape(-1)
        if values.size == 0:
            raise ValueError(f"game {name!r} has no runs")
        paper = ref_by_game.get(game)
        row = {
            "game": game,
            "seeds": values.size,
            "mean": values.mean(),
            "std": values.std(ddof=1) if values.size > 1 else np.nan,
            "hns": human_normalized_score(game, values.mean(), table),
            "paper_mean": paper.mean() if paper is not None else np.nan,
            "paper_std": paper.std(ddof=1) if paper is not None and paper.size > 1 else np.nan,
            "paper_hns": human_normalized_score(game, paper.mean(), table) if paper is not None else np.nan,
        }
        row["hns_minus_paper"] = row["hns"] - row["paper_hns"]
        rows.append(row)
    return pd.DataFrame(rows).set_index("game").sort_index()


# --------------------------------------------------------------------------------------------
# Plots (matplotlib object API with the Agg canvas: no global backend switch, no display needed)
# --------------------------------------------------------------------------------------------


def _save_figure_atomic(fig, path: str | os.PathLike) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    return atomic_write_to(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight"))


_METRIC_LABELS = {"mean": "Mean", "median": "Median", "iqm": "IQM", "optimality_gap": "Optimality gap"}


def plot_aggregates(results: Mapping[str, AggregateResult], path: str | os.PathLike) -> Path:
    """One panel per metric; per method a bar spanning its CI with a tick at the point estimate."""
    from matplotlib.figure import Figure

    if not results:
        raise ValueError("plot_aggregates: no results to plot")
    methods = list(results)
    metric_names = list(next(iter(results.values())).estimates)
    fig = Figure(figsize=(3.2 * len(metric_names), 0.6 + 0.45 * len(methods)))
    axes = fig.subplots(1, len(metric_names), squeeze=False)[0]
    colors = [f"C{i}" for i in range(len(methods))]
    for ax, metric in zip(axes, metric_names):
        for row, (method, color) in enumerate(zip(methods, colors)):
            est = results[method].estimates[metric]
            ax.barh(row, est.high - est.low, left=est.low, height=0.6, color=color, alpha=0.75)
            ax.vlines(est.point, row - 0.3, row + 0.3, color="k", linewidth=1.5)
        ax.set_yticks(range(len(methods)), methods if ax is axes[0] else [""] * len(methods))
        ax.margins(x=0.15)
        ax.set_title(_METRIC_LABELS.get(metric, metric))
        ax.set_xlabel("Human-normalised score")
        ax.grid(axis="x", alpha=0.3)
    return _save_figure_atomic(fig, path)


def plot_performance_profiles(profiles: Mapping[str, PerformanceProfile], path: str | os.PathLike) -> Path:
    """Fraction of runs with HNS > tau against tau, with shaded CI bands."""
    from matplotlib.figure import Figure

    if not profiles:
        raise ValueError("plot_performance_profiles: no profiles to plot")
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for i, (method, prof) in enumerate(profiles.items()):
        ax.plot(prof.taus, prof.profile, color=f"C{i}", label=method)
        ax.fill_between(prof.taus, prof.low, prof.high, color=f"C{i}", alpha=0.2)
    ax.axvline(1.0, color="gray", linestyle="--", linewidth=0.8)
    ax.set_xlabel(r"Human-normalised score ($\tau$)")
    ax.set_ylabel(r"Fraction of runs with score $> \tau$")
    ax.set_ylim(0, 1)
    ax.legend()
    ax.grid(alpha=0.3)
    return _save_figure_atomic(fig, path)
