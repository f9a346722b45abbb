"""Replay store / sampler benchmark on a synthetic 100k-step Atari-shaped store.

    .venv/bin/python benchmarks/bench_replay.py [--steps 100000] [--chunk-steps 100] [--device cpu] [--no-fsync]

Writes ~400 episodes of random lengths (64x64x3 uint8) into a temp folder the way the collector
does (a chunk at most every ``--chunk-steps`` steps, i.e. once per epoch of 100 env steps, so long
episodes span several chunk files), then reports write throughput, open and load_all times,
sampler batches/s (batch 32: S=6 left padding as for the denoiser, S=19 both-sided as for the
reward/termination model) and peak RSS. The authors' loader: 2.9 / 6.9 ms per batch (BASELINES.md).
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time

import numpy as np
import torch

from _record import add_record_argument, maybe_record
from diamond_kedro.replay.sampler import SegmentSampler
from diamond_kedro.replay.store import EpisodeChunk, ReplayStore


def rss_now() -> str:
    """Current RSS split into private (anon) and file-backed (mapped store pages) parts, Linux only."""
    try:
        fields = dict(line.split(":", 1) for line in open("/proc/self/status"))
        return f"now RssAnon {fields['RssAnon'].strip()}, RssFile {fields['RssFile'].strip()}"
    except (OSError, KeyError):
        return ""


def authors_style_ms(store: ReplayStore, budget: int, s: int, padding: str, batches: int) -> float:
    """Median ms/batch of a loader built like the original (spec §1.5/1.7): episodes cached in RAM
    as float32 (T,3,H,W) in [-1,1], each segment sliced, zero-padded with F.pad, then stacked.
    Uses the first episodes up to ``budget`` steps (the full 100k would need 4.9 GB)."""
    import torch.nn.functional as F

    from diamond_kedro.replay.sampler import episode_probabilities

    eps, total = [], 0
    for ep in store:
        if total >= budget:
            break
        eps.append({
            "obs": torch.from_numpy(np.array(ep.obs)).permute(0, 3, 1, 2).float().div(255).mul(2).sub(1),
            "act": torch.from_numpy(np.array(ep.act)), "rew": torch.from_numpy(np.array(ep.rew)),
            "end": torch.from_numpy(np.array(ep.end)), "trunc": torch.from_numpy(np.array(ep.trunc)),
        })
        total += ep.length
    lengths = np.array([len(e["obs"]) for e in eps])
    ids_all, p = episode_probabilities(lengths, (0.1, 0.1, 0.1, 0.7))
    rng = np.random.default_rng(0)
    times = []
    for _ in range(batches):
        t0 = time.perf_counter()
        segs = []
        for eid in rng.choice(ids_all, size=32, p=p):
            n = lengths[eid]
            t = int(rng.integers(0, n))
            u = int(rng.integers(0, s))
            start = (min(n, t + 1 + u) - s) if padding == "left" else t - u
            lo, hi = max(start, 0), min(start + s, n)
            pad_l, pad_r = lo - start, start + s - hi
            seg = {}
            for k, v in eps[eid].items():
                x = v[lo:hi]
                pad = [0, 0] * (x.dim() - 1) + [pad_l, pad_r]
                seg[k] = F.pad(x, pad)
            seg["mask"] = F.pad(torch.ones(hi - lo, dtype=torch.bool), [pad_l, pad_r])
            segs.append(seg)
        batch = {k: torch.stack([g[k] for g in segs]) for k in segs[0]}
        times.append(time.perf_counter() - t0)
    assert batch["obs"].shape == (32, s, 3, 64, 64)
    return float(np.median(times)) * 1e3


def synthetic_lengths(total: int, rng: np.random.Generator) -> list[int]:
    lengths: list[int] = []
    while sum(lengths) < total:
        lengths.append(int(rng.integers(20, 480)))  # mean ~250 -> ~400 episodes per 100k steps
    lengths[-1] -= sum(lengths) - total
    return [n for n in lengths if n > 0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--chunk-steps", type=int, default=100)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batches", type=int, default=300)
    parser.add_argument("--baseline-steps", type=int, default=10_000,
                        help="steps held as float32 in RAM for the authors-style loader comparison")
    parser.add_argument("--no-fsync", action="store_true", help="skip fsync (atomic, not power-safe)")
    add_record_argument(parser)
    args = parser.parse_args()
    torch.set_num_threads(1)
    fig: dict = {"config": {k: getattr(args, k) for k in ("steps", "chunk_steps", "device", "batches", "baseline_steps")}
                 | {"fsync": not args.no_fsync}, "samplers": []}
    rng = np.random.default_rng(0)
    lengths = synthetic_lengths(args.steps, rng)
    frames = rng.integers(0, 256, (512, 64, 64, 3), dtype=np.uint8)  # reused pixels: write cost, not RNG cost

    with tempfile.TemporaryDirectory() as tmp:
        store = ReplayStore(tmp, obs_shape=(64, 64, 3), fsync=not args.no_fsync)
        t0 = time.perf_counter()
        n_files = 0
        for n in lengths:
            eid = None
            for a in range(0, n, args.chunk_steps):
                t = min(args.chunk_steps, n - a)
                dead = a + t == n
                end = np.zeros(t, np.uint8)
                end[-1] = dead
                idx = rng.integers(0, len(frames), t)
                chunk = EpisodeChunk(
                    obs=frames[idx],
                    act=rng.integers(0, 4, t),
                    rew=rng.choice([0.0, 1.0], t, p=[0.95, 0.05]).astype(np.float32),
                    end=end,
                    trunc=np.zeros(t, np.uint8),
                    final_obs=frames[0] if dead else None,
                )
                eid = store.add_chunk(chunk, eid, epoch=n_files // 10)
                n_files += 1
        dt_write = time.perf_counter() - t0
        mb = args.steps * 64 * 64 * 3 / 1e6
        print(f"store: {store.num_episodes} episodes, {store.num_steps} steps, {n_files} chunk files")
        print(f"write: {dt_write:.2f} s  ({args.steps / dt_write:,.0f} steps/s, {mb / dt_write:,.0f} MB/s of obs)")
        fig.update(episodes=store.num_episodes, chunk_files=n_files, write_s=dt_write,
                   write_steps_per_s=args.steps / dt_write, write_mb_per_s=mb / dt_write)

        del store
        t0 = time.perf_counter()
        store = ReplayStore(tmp)
        dt_open = time.perf_counter() - t0
        print(f"open (verify manifest against {n_files} files + map them): {dt_open:.2f} s")
        fig["open_s"] = dt_open
        for s, padding in ((6, "left"), (19, "both")):
            sampler = SegmentSampler(store, 32, s, padding=padding, seed=0, device=args.device)
            for _ in range(20):
                sampler.sample()  # warm-up: map pages, allocator
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            times = []
            for _ in range(args.batches):
                t0 = time.perf_counter()
                batch = sampler.sample()
                if args.device.startswith("cuda"):
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - t0)
            med, mean = float(np.median(times)), float(np.mean(times))
            print(f"sampler B=32 S={s:2d} ({padding:4s}) on {args.device}: median {med * 1e3:.2f} ms/batch "
                  f"(mean {mean * 1e3:.2f}; {1 / med:,.0f} batches/s), obs {tuple(batch.obs.shape)}")
            ref = None
            if args.baseline_steps > 0:
                ref = authors_style_ms(store, args.baseline_steps, s, padding, args.batches)
                print(f"   authors-style float32-in-RAM loader, same run: median {ref:.2f} ms/batch "
                      f"(ratio ours/theirs {med * 1e3 / ref:.2f})")
            fig["samplers"].append({"seq_len": s, "padding": padding, "median_ms": med * 1e3, "mean_ms": mean * 1e3,
                                    "authors_style_median_ms": ref})
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        fig["peak_rss_after_sampling_mib"] = peak
        print(f"peak RSS after sampling: {peak:,.0f} MiB (store obs on disk: {mb:,.0f} MB; "
              "touched mapped pages count here but are page cache, not private memory); " + rss_now())
        t0 = time.perf_counter()
        episodes = store.load_all()
        dt_load = time.perf_counter() - t0
        t0 = time.perf_counter()
        checksum = sum(int(ep.obs[::50].sum(dtype=np.int64)) for ep in episodes)
        dt_touch = time.perf_counter() - t0
        print(f"load_all: {dt_load:.2f} s; "
              f"touch every 50th frame: {dt_touch:.2f} s (checksum {checksum % 997})")

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        fig.update(load_all_s=dt_load, touch_s=dt_touch, peak_rss_after_load_all_mib=peak)
        print(f"peak RSS after load_all (multi-chunk episodes are concatenated copies): {peak:,.0f} MiB; " + rss_now())
    replay_record(args, fig)


def replay_record(args: argparse.Namespace, fig: dict):
    """The record of one run (``--record DIR``): a row per sampler setting, every figure kept."""
    table = {"columns": ["batch", "segment", "padding", "median ms/batch", "authors-style ms/batch"],
             "rows": [[32, s["seq_len"], s["padding"], s["median_ms"], s["authors_style_median_ms"]]
                      for s in fig["samplers"]]}
    return maybe_record(args, "replay", fig, table=table, title="Replay store: write, open, sample, load")


if __name__ == "__main__":
    main()
