"""Atari 100k scoring: HNS by hand, and the paper's aggregates from DIAMOND's published seeds."""

import math

import numpy as np
import pytest

from diamond_kedro.evaluation.scores import (
    aggregate_metrics,
    canonical_game,
    human_normalized_score,
    load_reference,
    per_game_table,
    performance_profile,
    plot_aggregates,
    plot_performance_profiles,
    published_scores,
    superhuman_games,
)


def test_reference_table_is_complete():
    table = load_reference()
    assert len(table) == 26
    assert all(len(ref.diamond_seeds) == 5 for ref in table.values())
    # Spot values from spec §9: Breakout random 1.7, human 30.5; Pong random -20.7, human 14.6.
    assert (table["Breakout"].random, table["Breakout"].human) == (1.7, 30.5)
    assert (table["Pong"].random, table["Pong"].human) == (-20.7, 14.6)
    assert table["Breakout"].diamond_seeds == (124.0, 148.8, 81.0, 108.0, 200.6)


def test_hns_by_hand():
    # Breakout mean of the 5 seeds: (124 + 148.8 + 81 + 108 + 200.6) / 5 = 662.4 / 5 = 132.48
    # HNS = (132.48 - 1.7) / (30.5 - 1.7) = 130.78 / 28.8 = 4.540972...
    assert human_normalized_score("Breakout", 132.48) == pytest.approx(130.78 / 28.8, abs=1e-12)
    # Pong 20.36: (20.36 + 20.7) / (14.6 + 20.7) = 41.06 / 35.3 = 1.163173...
    assert human_normalized_score("Pong", 20.36) == pytest.approx(41.06 / 35.3, abs=1e-12)
    # Random score -> 0, human score -> 1.
    assert human_normalized_score("Alien", 227.8) == pytest.approx(0.0, abs=1e-12)
    assert human_normalized_score("Alien", 7127.7) == pytest.approx(1.0, abs=1e-12)


def test_hns_is_vectorised_and_accepts_env_ids():
    out = human_normalized_score("BreakoutNoFrameskip-v4", np.array([1.7, 30.5, 59.3]))
    # (59.3 - 1.7) / 28.8 = 57.6 / 28.8 = 2
    np.testing.assert_allclose(out, [0.0, 1.0, 2.0], atol=1e-12)
    assert canonical_game("ALE/Breakout-v5") == "Breakout"
    assert canonical_game("breakout") == "Breakout"


def test_unknown_game_is_named_in_the_error():
    with pytest.raises(ValueError, match="Tetris"):
        human_normalized_score("Tetris", 10.0)
    with pytest.raises(ValueError, match="Tetris"):
        aggregate_metrics({"Breakout": [10.0], "Tetris": [5.0]}, reps=10)


def test_unequal_run_counts_rejected():
    with pytest.raises(ValueError, match="same number of runs"):
        aggregate_metrics({"Breakout": [10.0, 20.0], "Pong": [5.0]}, reps=10)


@pytest.fixture(scope="module")
def published_aggregates():
    return aggregate_metrics(published_scores(), reps=500, seed=0)


def test_published_diamond_aggregates_match_paper(published_aggregates):
    # Paper / spec §9: mean 1.459, median 0.373, IQM 0.641 (pooled 26 x 5 runs, 25 % trimmed).
    est = published_aggregates.estimates
    assert round(est["mean"].point, 3) == 1.459
    assert round(est["median"].point, 3) == 0.373
    assert round(est["iqm"].point, 3) == 0.641
    assert published_aggregates.num_runs == 5
    assert len(published_aggregates.games) == 26


def test_published_superhuman_games():
    expected = [
        "Assault", "Boxing", "Breakout", "CrazyClimber", "Freeway", "Gopher",
        "Jamesbond", "Kangaroo", "Krull", "Pong", "RoadRunner",
    ]  # fmt: skip
    assert superhuman_games(published_scores()) == expected


def test_bootstrap_intervals_contain_point_and_are_ordered(published_aggregates):
    for name, est in published_aggregates.estimates.items():
        assert est.low < est.high, name
        assert est.low <= est.point <= est.high, name
    flat = published_aggregates.as_flat_dict()
    assert flat["hns_iqm"] == published_aggregates.estimates["iqm"].point
    assert flat["hns_num_superhuman"] == 11.0


def test_single_seed_has_degenerate_interval():
    # With one run per game the stratified bootstrap can only redraw that run: CI = point.
    # Breakout 59.3 -> HNS 2; Pong -20.7 -> HNS 0. Mean 1, median 1.
    res = aggregate_metrics({"Breakout": [59.3], "Pong": [-20.7]}, reps=50)
    assert res.estimates["mean"].point == pytest.approx(1.0)
    assert res.estimates["mean"].low == pytest.approx(1.0)
    assert res.estimates["mean"].high == pytest.approx(1.0)
    # Optimality gap (gamma 1): 1 - mean(min(2, 1), min(0, 1)) = 1 - 0.5 = 0.5
    assert res.estimates["optimality_gap"].point == pytest.approx(0.5)


def test_performance_profile_by_hand():
    # HNS values: Breakout seeds 1.7, 30.5, 59.3 -> 0, 1, 2; Pong -20.7, 14.6, 49.9 -> 0, 1, 2.
    scores = {"Breakout": [1.7, 30.5, 59.3], "Pong": [-20.7, 14.6, 49.9]}
    prof = performance_profile(scores, taus=[-0.5, 0.5, 1.5, 2.5], reps=200)
    # fraction of the 6 runs with HNS > tau: 6/6, 4/6, 2/6, 0/6
    np.testing.assert_allclose(prof.profile, [1.0, 4 / 6, 2 / 6, 0.0], atol=1e-12)
    assert np.all(prof.low <= prof.profile + 1e-12) and np.all(prof.profile <= prof.high + 1e-12)


def test_per_game_table_against_paper():
    ours = {"Breakout": [100.0, 120.0], "Pong": [21.0, 19.0]}
    df = per_game_table(ours)
    assert list(df.index) == ["Breakout", "Pong"]
    b = df.loc["Breakout"]
    assert b["mean"] == pytest.approx(110.0)
    assert b["std"] == pytest.approx(math.sqrt(200.0))  # sample std of (100, 120): sqrt(2 * 10^2 / 1)
    assert b["hns"] == pytest.approx((110.0 - 1.7) / 28.8)
    assert b["paper_mean"] == pytest.approx(132.48)
    assert b["paper_hns"] == pytest.approx(130.78 / 28.8)
    assert df.loc["Pong", "paper_mean"] == pytest.approx(20.36)


def test_plots_write_pngs(tmp_path, published_aggregates):
    prof = performance_profile(published_scores(), reps=50)
    a = plot_aggregates({"DIAMOND (paper)": published_aggregates}, tmp_path / "agg.png")
    b = plot_performance_profiles({"DIAMOND (paper)": prof}, tmp_path / "sub" / "profile.png")
    for p in (a, b):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(x.name for x in tmp_path.rglob("*") if x.is_file()) == ["agg.png", "profile.png"]
