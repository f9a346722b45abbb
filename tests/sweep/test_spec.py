"""Parsing of the sweep's options, the status files and the table (no Ray)."""

from __future__ import annotations

from pathlib import Path

import pytest

from diamond_kedro.sweep.spec import (
    CellStatus,
    Sweep,
    SweepError,
    format_table,
    parse_games,
    parse_params,
    parse_seeds,
    read_status,
    write_status,
)


def test_games_by_name_and_the_26_of_atari100k() -> None:
    assert parse_games("Breakout,pong, BreakoutNoFrameskip-v4") == ["Breakout", "Pong"]
    games = parse_games("atari100k")
    assert len(games) == 26 and games[0] == "Alien" and games[-1] == "UpNDown"
    assert parse_games("Pong,atari100k")[:2] == ["Pong", "Alien"] and len(parse_games("Pong,atari100k")) == 26


def test_unknown_game_is_named_with_the_valid_ones() -> None:
    with pytest.raises(SweepError, match=r"--games: .*'Tetris'.*Breakout"):
        parse_games("Breakout,Tetris")
    with pytest.raises(SweepError, match="no game"):
        parse_games(" , ")


def test_seed_ranges_and_lists() -> None:
    assert parse_seeds("0-4") == [0, 1, 2, 3, 4]
    assert parse_seeds("3,0,7") == [0, 3, 7]
    assert parse_seeds("0-2,10,1") == [0, 1, 2, 10]
    for bad in ("a", "4-2", "-1", "1-", ""):
        with pytest.raises(SweepError, match="--seeds"):
            parse_seeds(bad)


def test_params_as_kedro_run_takes_them() -> None:
    assert parse_params("run.device=cuda,denoiser.training.lr=1e-4,evaluate.fidelity_horizons=[1,2]") == {
        "run": {"device": "cuda"},
        "denoiser": {"training": {"lr": 1e-4}},
        "evaluate": {"fidelity_horizons": [1, 2]},
    }
    assert parse_params(None) == {}
    with pytest.raises(SweepError, match="not key=value"):
        parse_params("run.device")
    with pytest.raises(SweepError, match="env.game is set by the sweep"):
        parse_params("env.game=Pong")
    with pytest.raises(SweepError, match="run.seed is set by the sweep"):
        parse_params("run.seed=3")


def test_status_round_trip_and_table(tmp_path: Path) -> None:
    sweep = Sweep(name="s", folder=tmp_path, project=str(tmp_path), env="ci", games=["Breakout", "Pong"], seeds=[0, 1],
                  run_root=str(tmp_path / "runs"))
    assert [c for c in sweep.cells] == [("Breakout", 0), ("Breakout", 1), ("Pong", 0), ("Pong", 1)]
    sweep.save()
    assert Sweep.load(tmp_path).cells == sweep.cells
    done = CellStatus("Breakout", 0, "Breakout_seed0_s", state="done", epoch=3, total_epochs=3, env_steps=300,
                      latest_return=12.5, return_source="final_return_mean", attempt=2)
    write_status(sweep.status_path("Breakout", 0), done)
    running = CellStatus("Pong", 1, "Pong_seed1_s", state="running", epoch=1, env_steps=250, latest_return=-20.0,
                         return_source="test_dataset/return_mean", attempt=2)
    write_status(sweep.status_path("Pong", 1), running)
    assert read_status(sweep.status_path("Breakout", 0)) == done
    table = format_table(sweep.statuses()).splitlines()
    assert table[0].split() == ["game", "seed", "epoch", "env", "steps", "latest", "return", "state"]
    assert table[1].split() == ["Breakout", "0", "3/3", "300", "12.5", "(final)", "done"]
    assert table[2].split() == ["Breakout", "1", "0", "0", "-", "pending"]
    assert table[4].split() == ["Pong", "1", "1", "250", "-20.0", "running", "(attempt", "2)"]
    assert table[5] == "2 pending, 1 running, 1 done"


def test_missing_sweep_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SweepError, match="no sweep at .*missing sweep.json"):
        Sweep.load(tmp_path)
