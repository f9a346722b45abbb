"""benchmarks/_record.py: the records a benchmark's --record DIR writes, and the checks that read them."""

from __future__ import annotations

import argparse
import os
import subprocess
import json
import sys
from pathlib import Path

import pytest

from tests.docs.conftest import PROJECT

sys.path.insert(0, str(PROJECT / "benchmarks"))
from _record import SCHEMA, add_record_argument, load_record, maybe_record  # noqa: E402


def test_record_flag_writes_a_record_with_provenance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = argparse.ArgumentParser()
    add_record_argument(p)
    monkeypatch.setattr(sys, "argv", [str(PROJECT / "benchmarks" / "bench_x.py"), "--steps", "2"])
    args = p.parse_args(["--record", str(tmp_path / "rec")])
    path = maybe_record(args, "x", {"a": {"b": 1.5}}, table={"columns": ["k", "v"], "rows": [["a", 1.5]]})
    record = load_record(path)
    assert path == tmp_path / "rec" / "x.json"
    prov = record["provenance"]
    assert record["schema"] == SCHEMA and record["figures"] == {"a": {"b": 1.5}}
    assert prov["written_by"] == "harness" and prov["command"] == "python benchmarks/bench_x.py --steps 2"
    assert prov["cpu_model"] and prov["machine"] and prov["date"].endswith("Z")
    assert len(prov["commit"] or "") == 40  # the checkout is a git repository
    assert not list((tmp_path / "rec").glob("*.tmp"))  # written atomically


def test_no_record_without_the_flag() -> None:
    p = argparse.ArgumentParser()
    add_record_argument(p)
    assert maybe_record(p.parse_args([]), "x", {}) is None


def test_bad_records_are_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"schema": 1, "name": "bad", "title": "t", "provenance": {},
                               "table": {"columns": ["a", "b"], "rows": [[1]]}}))
    with pytest.raises(ValueError, match=r"bad.json: table row 0 has 1 cells, expected 2"):
        load_record(bad)
    bad.write_text("{")
    with pytest.raises(ValueError, match="bad.json: not a readable JSON record"):
        load_record(bad)


def test_committed_records_are_valid_and_say_where_they_come_from() -> None:
    paths = sorted((PROJECT / "docs" / "evidence" / "records").glob("*.json"))
    assert paths
    for path in paths:
        record = load_record(path)
        prov = record["provenance"]
        assert record["name"] == path.stem
        assert prov.get("command") and prov.get("date") and prov.get("cpu_model"), path
        if prov["written_by"] == "transcribed":
            assert len(prov["transcribed_from"]) == 40 and len(prov["first_published_in"]) == 40, path
        else:
            assert len(prov["commit"]) == 40, path


# --- every benchmark that prints figures takes --record DIR --------------------------------------------------

BENCH = PROJECT / "benchmarks"
RECORDING = ["bench_actor_critic", "bench_env", "bench_epoch", "bench_learning_rew_end", "bench_learning_rl",
             "bench_learning_wm", "bench_models", "bench_play", "bench_replay", "bench_vs_authors", "bench_winograd"]


def _bench(name: str):
    import importlib

    return importlib.import_module(name)  # benchmarks/ is on sys.path (above)


def _run(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(PROJECT / "src"), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


def test_every_benchmark_script_is_listed_here() -> None:
    assert sorted(p.stem for p in BENCH.glob("bench_*.py")) == sorted(RECORDING)


@pytest.mark.parametrize("name", RECORDING)
def test_every_benchmark_offers_the_record_flag(name: str, tmp_path: Path) -> None:
    proc = _run([str(BENCH / f"{name}.py"), "--help"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "--record DIR" in proc.stdout, name


def test_tiny_replay_and_env_runs_write_their_records(tmp_path: Path) -> None:
    rec = tmp_path / "rec"
    for args in (["bench_replay.py", "--steps", "200", "--chunk-steps", "50", "--batches", "2", "--baseline-steps", "0",
                  "--no-fsync"], ["bench_env.py", "--envs", "1", "--steps", "20"]):
        proc = _run([str(BENCH / args[0]), *args[1:], "--record", str(rec)], tmp_path)
        assert proc.returncode == 0, proc.stderr[-2000:]
    replay, env = load_record(rec / "replay.json"), load_record(rec / "env.json")
    assert replay["benchmark"] == "benchmarks/bench_replay.py" and replay["figures"]["config"]["steps"] == 200
    assert [r[1:3] for r in replay["table"]["rows"]] == [[6, "left"], [19, "both"]]
    assert replay["figures"]["write_steps_per_s"] > 0 and replay["provenance"]["command"].startswith(
        "python benchmarks/bench_replay.py --steps 200")
    assert [r[:4] for r in env["table"]["rows"]] == [["env", 1, "sync", "random"], ["collector", 1, "sync", "random"]]
    assert all(r[4] > 0 for r in env["table"]["rows"]) and env["figures"]["config"]["game"] == "Breakout"


def _args(tmp_path: Path, **kw) -> argparse.Namespace:
    return argparse.Namespace(record=tmp_path / "rec", **kw)


def test_step_timing_records_of_models_and_actor_critic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", [str(BENCH / "bench_actor_critic.py"), "--steps", "1"])
    r = {"amp": True, "median_s": 2.5, "times_s": [2.5], "median_cpu_s": 4.0, "peak_rss_gib": 1.25,
         "minor_faults": 10, "sys_s": 0.1, "load": (0.5, 1.5), "malloc_tuned": True}
    args = _args(tmp_path, device="cpu", threads=2, isa="native", steps=1, warmup=1, amp="auto", preload=4)
    path = _bench("_worker").record_steps(args, "actor_critic", [("ac_update", "malloc tuned", r)], title="t")
    record = load_record(path)
    assert record["table"]["rows"] == [["ac_update", "malloc tuned", "bf16", 2.5, 1.25, "0.50→1.50"]]
    assert record["figures"]["steps"][0]["times_s"] == [2.5] and record["figures"]["config"]["preload"] == 4
    assert record["benchmark"] == "benchmarks/bench_actor_critic.py"


def test_play_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", [str(BENCH / "bench_play.py")])
    play = _bench("bench_play")
    rows = [{"model": "atari", "size": "paper", "sampler": "3 Euler steps", "upsampler": None, "steps_per_s": 4.0,
             "cpu_s_per_step": 0.5},
            {"model": "csgo", "size": "quick", "sampler": "fast", "upsampler": True, "steps_per_s": 1.5,
             "cpu_s_per_step": None}]
    record = load_record(play.play_record(_args(tmp_path, device="cpu", steps=3, warmup=1), rows))
    assert record["name"] == "play_speed" and record["figures"]["rows"] == rows
    assert record["table"]["rows"][1] == ["csgo", "quick", "fast", True, 1.5, None]
    assert play.rate_text({"steps_per_s": 4.0, "cpu_s_per_step": 0.5}).split() == [
        "4.00", "steps/s", "(", "2.00", "per", "CPU", "second,", "0.50", "CPU", "s/step)"]


def test_winograd_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", [str(BENCH / "bench_winograd.py")])
    r = {"cpu_capability": "AVX2", "max_abs_err": 1e-6, "ref_max_abs": 5.0, "direct_s": 0.1, "winograd_s": 0.4,
         "direct_gflops": 60.0}
    record = load_record(_bench("bench_winograd").winograd_record(_args(tmp_path, isa="avx2", threads=2, repeats=5), r))
    # hand-computed: 100 ms direct at 60 GFLOP/s; Winograd 400 ms = 4x the time, the same work at 15 GFLOP/s
    assert record["table"]["rows"] == [["oneDNN direct", 100.0, 60.0, 1.0], ["Winograd F(2×2,3×3)", 400.0, 15.0, 4.0]]
    assert record["figures"]["config"] == {"isa": "avx2", "threads": 2, "repeats": 5}
