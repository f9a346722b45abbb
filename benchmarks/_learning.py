"""What the learning benchmarks share: a fixed real-Breakout dataset kept as replay stores, identical
training segments and evaluation contexts for our models and the authors', and the authors' code import.

The dataset is built once (``build_dataset``): BreakoutNoFrameskip with the paper's preprocessing (our
``envs/atari.py``: 4-frame skip, max-pool, 1-30 no-ops, 64×64 RGB), a seeded random policy that keeps its
action with probability 0.7 (so that actions have visible consequences), life loss ending an episode as in
the train env (end=1, the game goes on). The last ~10 % of steps (whole episodes) are the test store.
"""

from __future__ import annotations

import os
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_ROOT = Path(__file__).resolve().parent.parent / "data" / "learning" / "breakout_random_20k"


def build_dataset(root: Path, num_steps: int = 20_000, seed: int = 0, test_fraction: float = 0.1) -> tuple[Any, Any]:
    """(train, test) ReplayStores under ``root``; built on first use, reopened (and checked) afterwards."""
    from diamond_kedro.replay.store import EpisodeChunk, ReplayStore

    done = root / "COMPLETE"
    if done.is_file():
        train, test = ReplayStore(root / "train", create=False), ReplayStore(root / "test", create=False)
        if train.num_steps + test.num_steps != int(done.read_text()):
            raise SystemExit(f"{root}: stores hold {train.num_steps + test.num_steps} steps, COMPLETE says "
                             f"{done.read_text().strip()}; delete the folder to rebuild it")
        return train, test
    if root.exists():  # an interrupted build: start again from nothing
        import shutil

        shutil.rmtree(root)
    from diamond_kedro.envs.atari import make_preprocessed_env

    env = make_preprocessed_env("Breakout")
    rng = np.random.default_rng(seed)
    n_act = env.action_space.n
    episodes: list[EpisodeChunk] = []
    obs, _ = env.reset(seed=seed)
    buf: dict[str, list] = {k: [] for k in ("obs", "act", "rew", "end", "trunc")}
    a, total = 1, 0
    while total < num_steps:
        if rng.random() < 0.3:
            a = int(rng.integers(n_act))
        nxt, r, term, trunc, info = env.step(a)
        end = term or info["life_loss"]
        for k, v in zip(buf, (obs, a, r, end, trunc)):
            buf[k].append(v)
        total += 1
        if end or trunc or total == num_steps:
            dead = end or trunc
            episodes.append(EpisodeChunk(
                obs=np.stack(buf["obs"]), act=np.array(buf["act"], dtype=np.int64),
                rew=np.array(buf["rew"], dtype=np.float32), end=np.array(buf["end"], dtype=np.uint8),
                trunc=np.array(buf["trunc"], dtype=np.uint8), final_obs=nxt.copy() if dead else None,
            ))
            buf = {k: [] for k in buf}
            if term or trunc:
                nxt, _ = env.reset(seed=int(rng.integers(1 << 30)))
        obs = nxt
    env.close()
    n_test_steps, split = 0, len(episodes)
    while n_test_steps < test_fraction * num_steps:
        split -= 1
        n_test_steps += episodes[split].length
    for name, eps in (("train", episodes[:split]), ("test", episodes[split:])):
        store = ReplayStore(root / name, obs_shape=(64, 64, 3), fsync=False)
        store.add_chunks([(None, ep, 0) for ep in eps])
    done.write_text(str(num_steps))
    return ReplayStore(root / "train", create=False), ReplayStore(root / "test", create=False)


class Flat:
    """All episodes of a store concatenated: global step index -> (episode, position)."""

    def __init__(self, store: Any) -> None:
        eps = store.load_all()
        self.obs = np.concatenate([e.obs for e in eps])  # (N, 64, 64, 3) uint8
        self.act = np.concatenate([e.act for e in eps])
        self.rew = np.concatenate([e.rew for e in eps])
        self.end = np.concatenate([e.end for e in eps])
        self.trunc = np.concatenate([e.trunc for e in eps])
        lengths = np.array([e.length for e in eps])
        self.start = np.repeat(np.cumsum(lengths) - lengths, lengths)  # first step of each step's episode
        self.stop = np.repeat(np.cumsum(lengths), lengths)  # one past its last step
        self.final_obs = {int(s - 1): e.final_obs for s, e in zip(np.cumsum(lengths), eps) if e.final_obs is not None}
        self.num_actions = int(self.act.max()) + 1

    def __len__(self) -> int:
        return len(self.obs)


def to_float(frames: np.ndarray) -> Any:
    """uint8 (..., H, W, 3) -> float (..., 3, H, W) in [-1, 1]."""
    import torch

    x = torch.from_numpy(np.array(frames)).float().div(255).mul(2).sub(1)
    return x.movedim(-1, -3).contiguous()


def windows(data: Flat, anchors: np.ndarray, length: int, beyond: int = 0) -> dict[str, Any]:
    """Segments of ``length`` steps ending ``beyond`` steps after each anchor step (inclusive), padded
    where they leave the anchor's episode (padding: zero frame, action 0, mask False) — on the left at an
    episode's start, on the right past its end (``beyond=1`` puts a terminal step's transition, with its
    final frame, inside the segment, as the authors' ``can_sample_beyond_end`` does)."""
    import torch

    idx = anchors[:, None] + np.arange(-length + 1 + beyond, 1 + beyond)[None, :]
    mask = (idx >= data.start[anchors][:, None]) & (idx < data.stop[anchors][:, None])
    safe = np.where(mask, idx, anchors[:, None])
    obs = to_float(data.obs[safe]) * torch.from_numpy(mask)[:, :, None, None, None]
    final = torch.zeros(len(anchors), 3, 64, 64)
    has_final = torch.zeros(len(anchors), dtype=torch.bool)
    for i, row in enumerate(np.where(mask, idx, -1)):
        last = int(row.max())  # the segment's last real step
        if data.end[last] and last in data.final_obs:
            final[i] = to_float(data.final_obs[last])
            has_final[i] = True
    m = torch.from_numpy(mask)
    return {
        "obs": obs, "act": torch.from_numpy(np.where(mask, data.act[safe], 0)).long(),
        "rew": torch.from_numpy(np.where(mask, data.rew[safe], 0)).float(),
        "end": torch.from_numpy(np.where(mask, data.end[safe], 0)).to(torch.uint8),
        "trunc": torch.from_numpy(np.where(mask, data.trunc[safe], 0)).to(torch.uint8),
        "mask_padding": m, "final_obs": final, "has_final_obs": has_final,
    }


def import_authors(root: str | os.PathLike[str]) -> None:
    """Put an export of eloialonso/diamond on sys.path (to measure it; it is never part of the project)."""
    src = Path(root).resolve() / "src"
    if not (src / "agent.py").is_file():
        raise SystemExit(f"--authors {root}: not an export of eloialonso/diamond (no src/agent.py)")
    sys.path.insert(0, str(src))
    sys.modules.setdefault("wandb", types.ModuleType("wandb"))  # imported by their utils.py, unused here
    try:
        import torcheval  # noqa: F401
    except ImportError:
        raise SystemExit("the authors' code needs torcheval: pip install torcheval") from None


def eval_marks(steps: int, first: int) -> str:
    """'first,2·first,4·first,…,steps' (the steps at which a learning curve is evaluated)."""
    marks, s = [], first
    while s < steps:
        marks.append(s)
        s *= 2
    return ",".join(str(m) for m in marks + [steps])


def run_all(script: str, whos: list[str], seeds: list[int], jobs: int, worker_args: list[str]) -> dict[str, list[dict]]:
    """Run ``script --_worker --who W --seed S <worker_args>`` for every (seed, code), ``jobs`` at a time,
    each in a fresh process; returns the workers' JSON results per code, in seed order. A worker's
    result is printed (as one JSON line, to stderr) the moment it ends, so a sitting that dies later
    loses nothing already computed."""
    import json
    import time
    from concurrent.futures import ThreadPoolExecutor

    from _worker import run_json

    def one(seed: int, who: str) -> dict:
        t0 = time.perf_counter()
        res = run_json([sys.executable, script, "--_worker", "--who", who, "--seed", str(seed), *worker_args], "native")
        print(f"  {who:9s} seed {seed}: {time.perf_counter() - t0:.0f} s  {json.dumps(res['curve'][-1])}",
              file=sys.stderr, flush=True)
        return res

    order = [(seed, who) for seed in seeds for who in whos]  # codes alternate: drift hits both alike
    runs: dict[str, list[dict]] = {w: [] for w in whos}
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for (seed, who), res in zip(order, pool.map(lambda sw: one(*sw), order)):
            runs[who].append(res)
    return runs
