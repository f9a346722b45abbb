"""Does our world model learn like the authors'? Same real data, batches, steps and evaluation for both.

    python benchmarks/bench_learning_wm.py                                   # ours, 800 steps, seed 0
    python benchmarks/bench_learning_wm.py --authors /path/to/diamond-main --seeds 0,1
    python benchmarks/bench_learning_wm.py --steps 200 --eval-at 100,200     # quicker

Data: ~20k real Breakout frames from a seeded random policy (``_learning.build_dataset``, built once into
``data/learning/breakout_random_20k/{train,test}`` as replay stores). Model: the denoiser at a small size
(channels [32]*4, depths [2]*4, cond 128), the paper's preconditioning, σ distribution and optimiser
(AdamW lr 1e-4, wd 1e-2, eps 1e-8, 100 warm-up steps, clip 1), batch 16, segments of 6 (4 conditioning
frames, 2 prediction steps), identical segment indices for both codes. Evaluation at each ``--eval-at``
step: 64 held-out test contexts (4 real frames), 15 frames imagined autoregressively with the recorded
actions, 3 Euler steps; PSNR and SSIM (per image, then averaged) at horizons 1 and 15, next to
copying the last context frame. Each (code, seed) runs in a fresh process; ours first, then the authors'
for each seed. Prints the curves side by side, mean ± sd over seeds, and the wall time per step.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from _learning import DEFAULT_ROOT, Flat, build_dataset, eval_marks, import_authors, run_all, to_float, windows
from _record import add_record_argument, maybe_record

CTX, SEQ, HORIZON = 4, 6, 15
SMALL = dict(channels=[32, 32, 32, 32], depths=[2, 2, 2, 2], cond_channels=128, attn_depths=[False] * 4)


class Ours:
    def __init__(self, num_actions: int, amp: bool = False) -> None:
        from diamond_kedro.models.denoiser import Denoiser, DenoiserConfig
        from diamond_kedro.models.diffusion_sampler import DiffusionSampler
        from diamond_kedro.models.unet import InnerModelConfig
        from diamond_kedro.training.optim import make_optimizer, make_warmup_scheduler, optimizer_step

        self.model = Denoiser(DenoiserConfig(inner_model=InnerModelConfig(num_actions=num_actions, **SMALL)))
        self.sampler = DiffusionSampler(self.model)
        self.opt = make_optimizer(self.model, lr=1e-4, weight_decay=1e-2, eps=1e-8)
        self.sched = make_warmup_scheduler(self.opt, 100)
        self._step = optimizer_step
        self.amp = amp  # bf16 autocast of the training forward, as ``run.amp`` does

    def train_step(self, seg: dict) -> float:
        import torch

        from diamond_kedro.replay.batch import Batch

        b = seg["obs"].size(0)
        batch = Batch(**seg, episode_ids=list(range(b)), starts=seg["act"].new_zeros(b))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.amp):
            loss, _ = self.model.compute_loss(batch)
        self._step(self.model, self.opt, self.sched, loss, max_grad_norm=1.0)
        return loss.item()

    def sample(self, obs, act):
        return self.sampler.sample(obs, act)[0]


class Authors:
    def __init__(self, num_actions: int, root: str) -> None:
        import_authors(root)
        import torch
        from data import Batch
        from models.diffusion import Denoiser, DenoiserConfig, InnerModelConfig, SigmaDistributionConfig
        from models.diffusion.diffusion_sampler import DiffusionSampler, DiffusionSamplerConfig
        from utils import configure_opt, get_lr_sched

        inner = InnerModelConfig(img_channels=3, num_steps_conditioning=CTX, num_actions=num_actions,
                                 **{k: v if k != "attn_depths" else [0] * 4 for k, v in SMALL.items()})
        self.model = Denoiser(DenoiserConfig(inner, sigma_data=0.5, sigma_offset_noise=0.3))
        self.model.setup_training(SigmaDistributionConfig(loc=-0.4, scale=1.2, sigma_min=2e-3, sigma_max=20))
        self.sampler = DiffusionSampler(self.model, DiffusionSamplerConfig(num_steps_denoising=3))
        self.opt = configure_opt(self.model, lr=1e-4, weight_decay=1e-2, eps=1e-8)
        self.sched = get_lr_sched(self.opt, 100)
        self.Batch, self.torch = Batch, torch

    def train_step(self, seg: dict) -> float:
        b = seg["obs"].size(0)
        batch = self.Batch(seg["obs"], seg["act"], seg["rew"], seg["end"].long(), seg["trunc"].long(),
                           seg["mask_padding"], [{} for _ in range(b)], [None] * b)
        loss, _ = self.model(batch)
        loss.backward()
        self.torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        self.opt.zero_grad()
        self.sched.step()
        return loss.item()

    def sample(self, obs, act):
        return self.sampler.sample(obs, act)[0]


def eval_contexts(data: Flat, n: int) -> np.ndarray:
    """n test indices i with 4 real context frames ending at i and 15 real frames after it, same episode."""
    i = np.arange(len(data))
    ok = (i - data.start >= CTX - 1) & (i + HORIZON < data.stop)
    return np.random.default_rng(2).choice(np.flatnonzero(ok), size=n, replace=False)


def pooled_psnr(pred, real) -> float:
    """PSNR of the mean squared error over all images (0-255 scale): finite even when some predicted
    frames are exact (Breakout has many static frames), unlike a mean of per-image PSNRs."""
    mse = (pred.double() - real.double()).square().mean().item()
    return 10 * np.log10(255.0**2 / max(mse, 1e-10))


def to_uint8(x):
    return x.add(1).div(2).mul(255).round().clamp(0, 255)


def evaluate(model, data: Flat, idx: np.ndarray, seed: int) -> dict:
    import torch

    from diamond_kedro.evaluation.image_metrics import ssim

    torch.manual_seed(seed)
    ctx = to_float(data.obs[idx[:, None] + np.arange(-CTX + 1, 1)])
    acts = torch.from_numpy(data.act[idx[:, None] + np.arange(-CTX + 1, HORIZON + 1)]).long()
    out = {}
    with torch.no_grad():
        for h in range(1, HORIZON + 1):
            nxt = model.sample(ctx, acts[:, h - 1 : h - 1 + CTX])
            ctx = torch.cat((ctx[:, 1:], nxt.unsqueeze(1)), dim=1)
            if h in (1, HORIZON):
                real = to_uint8(to_float(data.obs[idx + h]))
                pred = to_uint8(nxt)
                out[f"psnr_h{h}"] = pooled_psnr(pred, real)
                out[f"ssim_h{h}"] = ssim(pred, real, value_range=(0, 255)).mean().item()
    return out


def copy_last(data: Flat, idx: np.ndarray) -> dict:
    from diamond_kedro.evaluation.image_metrics import ssim

    last = to_uint8(to_float(data.obs[idx]))
    out = {}
    for h in (1, HORIZON):
        real = to_uint8(to_float(data.obs[idx + h]))
        out[f"psnr_h{h}"] = pooled_psnr(last, real)
        out[f"ssim_h{h}"] = ssim(last, real, value_range=(0, 255)).mean().item()
    return out


def worker(args: argparse.Namespace) -> dict:
    if args.who.startswith("ours"):
        from diamond_kedro.utils.allocator import tune_glibc_malloc

        tune_glibc_malloc()  # as every run of ours does
    import torch

    torch.set_num_threads(args.threads)
    train, test = build_dataset(args.data)
    tr, te = Flat(train), Flat(test)
    torch.manual_seed(args.seed)
    model = Ours(tr.num_actions, amp=args.who == "ours-bf16") if args.who.startswith("ours") else Authors(tr.num_actions, args.authors)
    # segments: 6 steps ending at a step with a real predecessor, so both prediction targets are real
    ends = np.flatnonzero(np.arange(len(tr)) - tr.start >= 1)
    rng = np.random.default_rng(1000 + args.seed)
    idx = eval_contexts(te, args.eval)
    eval_at = sorted(set(int(s) for s in args.eval_at.split(","))) if args.eval_at else [args.steps]
    curve, losses, train_s = [], [], 0.0
    for step in range(1, args.steps + 1):
        seg = windows(tr, rng.choice(ends, size=args.batch), SEQ)
        t0 = time.perf_counter()
        losses.append(model.train_step(seg))
        train_s += time.perf_counter() - t0
        if step in eval_at:
            res = evaluate(model, te, idx, seed=10_000 + step)
            curve.append({"step": step, "loss": float(np.mean(losses[-50:])), "train_s_per_step": train_s / step, **res})
            print(json.dumps(curve[-1]), file=sys.stderr, flush=True)
    return {"who": args.who, "seed": args.seed, "loss_first50": float(np.mean(losses[:50])), "curve": curve}


def fmt(values: list[float], digits: int = 2) -> str:
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f}±{statistics.stdev(values):.{digits}f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--authors", help="export of eloialonso/diamond (branch main): also run their denoiser")
    p.add_argument("--steps", type=int, default=800)
    p.add_argument("--eval-at", default=None, help="comma-separated steps to evaluate at (default: 100,200,400,...,steps)")
    p.add_argument("--seeds", default="0")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--eval", type=int, default=64, help="held-out contexts")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--data", type=Path, default=DEFAULT_ROOT)
    p.add_argument("--amp", action="store_true",
                   help="also train ours with bf16 autocast (run.amp): worth it on CPUs with AMX/AVX512-BF16, and GPUs")
    p.add_argument("--codes", default=None,
                   help="comma-separated subset of ours,ours-bf16,authors to run (default: all that the flags allow)")
    p.add_argument("--jobs", type=int, default=1,
                   help="runs at once (learning figures do not depend on it; wall times do: use --threads 1 with --jobs 2)")
    p.add_argument("--json", type=Path)
    p.add_argument("--_worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--who", default="ours", help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    add_record_argument(p)
    args = p.parse_args()
    args.eval_at = args.eval_at or eval_marks(args.steps, 100)
    if args._worker:
        print(json.dumps(worker(args)))
        return

    t0 = time.perf_counter()
    train, test = build_dataset(args.data)
    te = Flat(test)
    base = copy_last(te, eval_contexts(te, args.eval))
    print(f"data: {args.data} ({train.num_steps} train / {test.num_steps} test steps); "
          f"built/opened in {time.perf_counter() - t0:.0f} s", flush=True)
    whos = ["ours"] + (["ours-bf16"] if args.amp or "ours-bf16" in (args.codes or "") else []) + (["authors"] if args.authors else [])
    if args.codes:
        unknown = set(args.codes.split(",")) - set(whos)
        if unknown:
            p.error(f"--codes: {sorted(unknown)} not among {whos} (authors needs --authors)")
        whos = [w for w in whos if w in args.codes.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    worker_args = ["--steps", str(args.steps), "--eval-at", args.eval_at, "--batch", str(args.batch), "--eval",
                   str(args.eval), "--threads", str(args.threads), "--data", str(args.data)]
    runs = run_all(__file__, whos, seeds, args.jobs, worker_args + (["--authors", args.authors] if args.authors else []))

    print(f"\ncopy-last-frame baseline: PSNR h1 {base['psnr_h1']:.2f} dB, h15 {base['psnr_h15']:.2f} dB; "
          f"SSIM h1 {base['ssim_h1']:.3f}, h15 {base['ssim_h15']:.3f}")
    cols = ["loss", "psnr_h1", "psnr_h15", "ssim_h1", "ssim_h15", "train_s_per_step"]
    print(f"{'step':>5s} {'code':8s} " + " ".join(f"{c:>16s}" for c in cols))
    for k, step in enumerate(int(s) for s in args.eval_at.split(",")):
        for who in whos:
            row = [fmt([r["curve"][k][c] for r in runs[who]], 4 if c in ("loss", "ssim_h1", "ssim_h15") else 2) for c in cols]
            print(f"{step:5d} {who:8s} " + " ".join(f"{v:>16s}" for v in row))
    for who in whos:
        passed = [next((c["step"] for c in r["curve"] if c["psnr_h1"] > base["psnr_h1"]), None) for r in runs[who]]
        print(f"{who}: first evaluated step with PSNR h1 above copy-last, per seed: {passed}")
    if args.json:
        args.json.write_text(json.dumps({"copy_last": base, "runs": runs, "args": vars(args)}, indent=1, default=str))
    maybe_record(args, "learning_wm", {"copy_last": base, "runs": runs}, title="World model learning, ours vs the authors' code")


if __name__ == "__main__":
    main()
