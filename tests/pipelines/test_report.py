"""The report pipeline on hand-made MLflow runs, with HNS computed by hand.

Reference scores (random, human): Breakout (1.7, 30.5), Pong (-20.7, 14.6); HNS = (s - random) / (human - random).

Fake training runs:
  Breakout seed 0: final_return_mean 30.5              -> HNS (30.5 - 1.7) / 28.8 = 1
  Breakout seed 1: final_return_mean 1.7 (its test_dataset/return_mean 25 is ignored)  -> HNS 0
  Pong seed 0:     unfinished, test_dataset/return_mean -20.7 at epoch 1, -3.05 at epoch 2
                   -> scored by the latest, -3.05: HNS (-3.05 + 20.7) / 35.3 = 17.65 / 35.3 = 0.5
Per game: Breakout mean (30.5 + 1.7) / 2 = 16.1, HNS (16.1 - 1.7) / 28.8 = 0.5, sample std 28.8 / sqrt(2);
Pong mean -3.05, HNS 0.5, one seed so no std.
Aggregates need equal runs per game: each game keeps its lowest seed -> HNS {Breakout: 1, Pong: 0.5}:
mean = median = 0.75; IQM of 2 values (25 % trimming drops int(0.5) = 0 each side) = 0.75;
optimality gap = 1 - mean(min(HNS, 1)) = 0.25. With one run per game every bootstrap replicate is the
same matrix, so the CI is the point.
Paper on the same games: Breakout seeds mean 132.48 -> HNS 130.78 / 28.8 = 4.540972...
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from diamond_kedro.evaluation.report import (
    OURS,
    PAPER_ALL,
    PAPER_SAME,
    REPORT_TAG,
    ReportConfig,
    build_report,
    load_runs,
    write_report,
)

from .conftest import kedro_run

EXPERIMENT = "diamond-atari"


def _training_run(client: MlflowClient, exp: str, game: str, seed: int, metrics: dict[str, list[tuple[int, float]]],
                  name: str = "default") -> str:
    key = f"{game}_seed{seed}_{name}"
    run = client.create_run(exp, run_name=key, tags={"diamond.run_key": key})
    rid = run.info.run_id
    for k, v in {"env.game": game, "run.seed": seed, "run.name": name}.items():
        client.log_param(rid, k, v)
    for k, history in metrics.items():
        for step, value in history:
            client.log_metric(rid, k, value, step=step)
    client.set_terminated(rid)
    return rid


def make_store(path: Path) -> str:
    uri = f"sqlite:///{path}"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment(EXPERIMENT, artifact_location=(path.parent / "mlruns").as_uri())
    _training_run(client, exp, "Breakout", 0, {"final_return_mean": [(3, 30.5)], "test_dataset/return_mean": [(3, 9.0)]})
    _training_run(client, exp, "BreakoutNoFrameskip-v4", 1,
                  {"final_return_mean": [(3, 1.7)], "test_dataset/return_mean": [(2, 25.0)]})
    _training_run(client, exp, "Pong", 0, {"test_dataset/return_mean": [(1, -20.7), (2, -3.05)]})
    _training_run(client, exp, "Pong", 1, {"env_steps": [(1, 100.0)]}, name="other")  # no score yet
    client.create_run(exp, run_name="notebook scratch")  # not a training run: no diamond.run_key tag
    return uri


def test_report_by_hand(tmp_path: Path) -> None:
    uri = make_store(tmp_path / "mlflow.db")
    runs = load_runs(uri, EXPERIMENT)
    assert len(runs) == 4  # the untagged run is not a training run
    by_key = runs.set_index("run_key")
    assert by_key.loc["BreakoutNoFrameskip-v4_seed1_default", "game"] == "Breakout"
    assert by_key.loc["Pong_seed0_default", "score"] == pytest.approx(-3.05)
    assert by_key.loc["Pong_seed0_default", "score_source"] == "test_dataset/return_mean"
    assert by_key.loc["Pong_seed0_default", "epoch"] == 2
    assert by_key.loc["Breakout_seed0_default", "score"] == 30.5  # final beats the test metric
    assert math.isnan(by_key.loc["Pong_seed1_other", "score"])
    assert len(load_runs(uri, EXPERIMENT, run_names=["other"])) == 1
    assert load_runs(uri, "no-such-experiment").empty

    report = build_report(runs, reps=200, seed=0)
    pg = report.per_game
    assert pg.loc["Breakout", "seeds"] == 2 and pg.loc["Pong", "seeds"] == 1
    assert pg.loc["Breakout", "mean"] == pytest.approx(16.1)
    assert pg.loc["Breakout", "hns"] == pytest.approx(0.5)
    assert pg.loc["Breakout", "std"] == pytest.approx(28.8 / math.sqrt(2))
    assert pg.loc["Pong", "hns"] == pytest.approx(0.5)
    assert pg.loc["Breakout", "paper_hns"] == pytest.approx((132.48 - 1.7) / 28.8)
    ours = report.aggregates[OURS].estimates
    for name, want in (("mean", 0.75), ("median", 0.75), ("iqm", 0.75), ("optimality_gap", 0.25)):
        assert ours[name].point == pytest.approx(want), name
        assert (ours[name].low, ours[name].high) == pytest.approx((want, want)), name
    assert report.aggregates[PAPER_SAME].games == ("Breakout", "Pong")
    assert report.aggregates[PAPER_ALL].estimates["mean"].point == pytest.approx(1.459, abs=5e-4)
    assert report.aggregates[PAPER_ALL].estimates["iqm"].point == pytest.approx(0.641, abs=5e-4)
    assert any("lowest seed" in n for n in report.notes) and any("Pong_seed1_other" in n for n in report.notes)

    files = write_report(report, tmp_path / "out", reps=200)
    for name in ("runs", "per_game_csv", "json", "markdown", "aggregates_png", "profiles_png", "per_game_png"):
        assert files[name].stat().st_size > 0, name
    table = pd.read_csv(files["per_game_csv"], index_col="game")
    assert table.loc["Pong", "hns"] == pytest.approx(0.5)
    md = files["markdown"].read_text()
    assert "| Breakout | 2 | 16.100 |" in md


def test_report_without_runs_shows_the_paper(tmp_path: Path) -> None:
    report = build_report(load_runs(f"sqlite:///{tmp_path / 'empty.db'}", EXPERIMENT), reps=100)
    assert list(report.aggregates) == [PAPER_ALL] and report.per_game.empty
    files = write_report(report, tmp_path / "out", reps=100)
    assert "No tracked run" in files["markdown"].read_text()


def test_bad_parameter_is_named() -> None:
    with pytest.raises(ValueError, match="bootstrap_rep"):
        ReportConfig.from_params({"bootstrap_rep": 10})


def test_kedro_report_pipeline(project: Path) -> None:
    uri = make_store(project / "mlflow.db")  # where conf/base/mlflow.yml points
    kedro_run(project, "--pipelines=report", "--params=report.bootstrap_reps=100")
    out = project / "data" / "08_reporting"
    table = pd.read_csv(out / "per_game.csv", index_col="game")
    assert table.loc["Breakout", "hns"] == pytest.approx(0.5)
    for name in ("report.md", "aggregates.json", "aggregates.png", "performance_profiles.png", "runs.csv"):
        assert (out / name).stat().st_size > 0, name

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(EXPERIMENT).experiment_id
    reports = [r for r in client.search_runs([exp]) if r.data.tags.get(REPORT_TAG) == "true"]
    assert len(reports) == 1 and reports[0].info.run_name == "report"
    assert reports[0].data.metrics["ours/hns_mean"] == pytest.approx(0.75)
    assert reports[0].data.metrics["paper/hns_iqm"] == pytest.approx(0.641, abs=5e-4)
    logged = {a.path for a in client.list_artifacts(reports[0].info.run_id, "report")}
    assert "report/report.md" in logged and "report/per_game.csv" in logged
    assert len(load_runs(uri, EXPERIMENT)) == 4  # the report run is never read back as a training run
    # the experiment (made before by hand) now opens in MLflow's model-training view
    assert client.get_experiment(exp).tags["mlflow.experimentKind"] == "custom_model_development"
