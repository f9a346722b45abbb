"""The per-machine kernel-choice cache keeps every writer's entries when processes measure at once."""

from __future__ import annotations

import json
import multiprocessing as mp
from pathlib import Path
from typing import Any

NAMES = 15


def _writer(cache_dir: str, who: int, start: Any) -> None:
    import os

    os.environ["DIAMOND_CACHE_DIR"] = cache_dir
    from diamond_kedro.utils.layout_probe import cached_pick

    start.wait()
    for i in range(NAMES):
        times = {"a": float(who), "b": float(i)}
        got = cached_pick(f"probe_{who}_{i}", lambda: times, lambda t: "a" if t["a"] <= t["b"] else "b")
        assert got == ("a" if who <= i else "b")


def test_concurrent_writers_keep_each_others_entries(tmp_path: Path) -> None:
    ctx = mp.get_context("spawn")
    start = ctx.Barrier(4)
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), who, start)) for who in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
    assert all(p.exitcode == 0 for p in procs)
    cache = json.loads((tmp_path / "kernel_choices.json").read_text())
    want = {f"probe_{who}_{i}" for who in range(4) for i in range(NAMES)}
    assert set(cache) == want, f"lost {len(want - set(cache))} of {len(want)} entries"
    for who in range(4):
        for i in range(NAMES):
            (entry,) = cache[f"probe_{who}_{i}"].values()
            assert entry == {"choice": "a" if who <= i else "b", "seconds": {"a": float(who), "b": float(i)}}
