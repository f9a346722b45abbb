"""Does our reward/termination model learn like the authors'? Same data, segments, steps and evaluation.

    python benchmarks/bench_learning_rew_end.py                                   # ours, 600 steps
    python benchmarks/bench_learning_rew_end.py --authors /path/to/diamond-main --seeds 0,1 --jobs 2 --threads 1

Data: the real Breakout dataset of bench_learning_wm.py (``_learning.build_dataset``). Model: the reward/end
model at the quick profile's size (channels [16]*4, depths [2]*4, cond 128, LSTM 128) so that a run fits
in minutes on 2 CPU cores (``--paper-size`` for channels [32]*4 and LSTM 512); AdamW lr 1e-4, wd 1e-2,
eps 1e-8, 100 warm-up steps, clip 100; batch 16 segments of 19 steps,
identical for both codes; each segment reaches one step past a uniformly drawn step (right padding
past an episode's end, so terminal transitions are trained with their final frame, as in the paper).
Evaluation: every held-out test transition, in consecutive segments (the last one of an episode may
overlap the one before: those steps count twice, for both codes alike); each code's own training forward
on them, under no_grad, gives confusion matrices of the reward sign (-1/0/+1) and of termination; the
table prints F1 per class.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from _learning import DEFAULT_ROOT, Flat, build_dataset, eval_marks, import_authors, run_all, windows
from _record import add_record_argument, maybe_record

SEQ = 19


def sizes(paper: bool) -> dict:
    if paper:
        return dict(lstm_dim=512, channels=[32] * 4, depths=[2] * 4, cond_channels=128)
    return dict(lstm_dim=128, channels=[16] * 4, depths=[2] * 4, cond_channels=128)


class Ours:
    def __init__(self, num_actions: int, paper: bool) -> None:
        from diamond_kedro.models.rew_end_model import RewEndModel, RewEndModelConfig
        from diamond_kedro.training.optim import make_optimizer, make_warmup_scheduler, optimizer_step

        self.model = RewEndModel(RewEndModelConfig(num_actions=num_actions, **sizes(paper)))
        self.opt = make_optimizer(self.model, lr=1e-4, weight_decay=1e-2, eps=1e-8)
        self.sched = make_warmup_scheduler(self.opt, 100)
        self._step = optimizer_step

    @staticmethod
    def _batch(seg: dict):
        from diamond_kedro.replay.batch import Batch

        b = seg["obs"].size(0)
        return Batch(**seg, episode_ids=list(range(b)), starts=seg["act"].new_zeros(b))

    def train_step(self, seg: dict) -> float:
        loss, _ = self.model.compute_loss(self._batch(seg))
        self._step(self.model, self.opt, self.sched, loss, max_grad_norm=100.0)
        return loss.item()

    def confusion(self, seg: dict):
        _, m = self.model.compute_loss(self._batch(seg))
        return m["confusion_matrix"]["rew"], m["confusion_matrix"]["end"]


class Authors:
    def __init__(self, num_actions: int, paper: bool, root: str) -> None:
        import_authors(root)
        import torch
        from data import Batch
        from models.rew_end_model import RewEndModel, RewEndModelConfig
        from utils import configure_opt, get_lr_sched

        s = sizes(paper)
        self.model = RewEndModel(RewEndModelConfig(img_channels=3, img_size=64, attn_depths=[0] * 4,
                                                   num_actions=num_actions, **s))
        self.opt = configure_opt(self.model, lr=1e-4, weight_decay=1e-2, eps=1e-8)
        self.sched = get_lr_sched(self.opt, 100)
        self.Batch, self.torch = Batch, torch

    def _batch(self, seg: dict):
        b = seg["obs"].size(0)
        info = [{"final_observation": seg["final_obs"][i]} if seg["has_final_obs"][i] else {} for i in range(b)]
        return self.Batch(seg["obs"], seg["act"], seg["rew"], seg["end"].long(), seg["trunc"].long(),
                          seg["mask_padding"], info, [None] * b)

    def train_step(self, seg: dict) -> float:
        loss, _ = self.model(self._batch(seg))
        loss.backward()
        self.torch.nn.utils.clip_grad_norm_(self.model.parameters(), 100.0)
        self.opt.step()
        self.opt.zero_grad()
        self.sched.step()
        return loss.item()

    def confusion(self, seg: dict):
        _, m = self.model(self._batch(seg))
        return m["confusion_matrix"]["rew"], m["confusion_matrix"]["end"]


def eval_anchors(data: Flat) -> np.ndarray:
    """Anchors of consecutive segments covering every test transition: a segment holds its anchor's 18
    steps up to the anchor and the step after it (padding past an episode's end, where the terminal
    transition gets the final frame), so the 18 transitions it scores are those of steps anchor-17..anchor."""
    anchors = []
    for start, stop in sorted(set(zip(data.start.tolist(), data.stop.tolist()))):
        a = list(range(start + SEQ - 2, stop, SEQ - 1))
        if not a or a[-1] != stop - 1:
            a.append(stop - 1)
        anchors += a
    return np.array(anchors)


def f1(cm) -> list[float]:
    """F1 per class from a confusion matrix with rows = true class, columns = predicted."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    prec = np.divide(tp, cm.sum(0), out=np.zeros_like(tp), where=cm.sum(0) > 0)
    rec = np.divide(tp, cm.sum(1), out=np.zeros_like(tp), where=cm.sum(1) > 0)
    return [float(2 * p * r / (p + r)) if p + r > 0 else 0.0 for p, r in zip(prec, rec)]


def evaluate(model, te: Flat, anchors: np.ndarray) -> dict:
    import torch

    cm_rew, cm_end = np.zeros((3, 3), np.int64), np.zeros((2, 2), np.int64)
    with torch.no_grad():
        for k in range(0, len(anchors), 64):
            r, e = model.confusion(windows(te, anchors[k : k + 64], SEQ, beyond=1))
            cm_rew += np.asarray(r, dtype=np.int64)
            cm_end += np.asarray(e, dtype=np.int64)
    fr, fe = f1(cm_rew), f1(cm_end)
    return {"f1_rew_-1": fr[0], "f1_rew_0": fr[1], "f1_rew_+1": fr[2], "f1_end_0": fe[0], "f1_end_1": fe[1],
            "cm_rew": cm_rew.tolist(), "cm_end": cm_end.tolist()}


def worker(args: argparse.Namespace) -> dict:
    if args.who == "ours":
        from diamond_kedro.utils.allocator import tune_glibc_malloc

        tune_glibc_malloc()
    import torch

    torch.set_num_threads(args.threads)
    train, test = build_dataset(args.data)
    tr, te = Flat(train), Flat(test)
    torch.manual_seed(args.seed)
    model = Ours(tr.num_actions, args.paper_size) if args.who == "ours" else Authors(tr.num_actions, args.paper_size, args.authors)
    anchors = np.arange(len(tr))  # any step; the segment reaches one step past it (right padding at an end)
    rng = np.random.default_rng(1000 + args.seed)
    test_anchors = eval_anchors(te)
    eval_at = sorted(set(int(s) for s in args.eval_at.split(",")))
    curve, losses, train_s = [], [], 0.0
    for step in range(1, args.steps + 1):
        seg = windows(tr, rng.choice(anchors, size=args.batch), SEQ, beyond=1)
        t0 = time.perf_counter()
        losses.append(model.train_step(seg))
        train_s += time.perf_counter() - t0
        if step in eval_at:
            curve.append({"step": step, "loss": float(np.mean(losses[-50:])), "train_s_per_step": train_s / step,
                          **evaluate(model, te, test_anchors)})
            print(json.dumps(curve[-1]), file=sys.stderr, flush=True)
    return {"who": args.who, "seed": args.seed, "curve": curve}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--authors", help="export of eloialonso/diamond (branch main): also run their model")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--eval-at", default=None, help="comma-separated steps (default: 150,300,...,steps)")
    p.add_argument("--seeds", default="0")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--paper-size", action="store_true", help="channels [32]*4, LSTM 512 (≈ 4x slower)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--jobs", type=int, default=1, help="runs at once (figures do not depend on it; wall times do)")
    p.add_argument("--data", type=Path, default=DEFAULT_ROOT)
    p.add_argument("--json", type=Path)
    p.add_argument("--_worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--who", default="ours", help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    add_record_argument(p)
    args = p.parse_args()
    args.eval_at = args.eval_at or eval_marks(args.steps, 150)
    if args._worker:
        print(json.dumps(worker(args)))
        return

    train, test = build_dataset(args.data)
    te = Flat(test)
    n_rew = {c: int((np.sign(te.rew) == c).sum()) for c in (-1, 0, 1)}
    print(f"data: {args.data} ({train.num_steps} train / {test.num_steps} test steps; test rewards -1/0/+1: "
          f"{n_rew[-1]}/{n_rew[0]}/{n_rew[1]}, ends {int(te.end.sum())})", flush=True)
    whos = ["ours"] + (["authors"] if args.authors else [])
    worker_args = ["--steps", str(args.steps), "--eval-at", args.eval_at, "--batch", str(args.batch),
                   "--threads", str(args.threads), "--data", str(args.data)] + (["--paper-size"] if args.paper_size else [])
    seeds = [int(seed) for seed in args.seeds.split(",")]
    runs = run_all(__file__, whos, seeds, args.jobs, worker_args + (["--authors", args.authors] if args.authors else []))
    cols = ["loss", "f1_rew_0", "f1_rew_+1", "f1_end_0", "f1_end_1", "train_s_per_step"]
    print(f"\n{'step':>5s} {'code':8s} {'seed':>4s} " + " ".join(f"{c:>16s}" for c in cols))
    for k, step in enumerate(int(s) for s in args.eval_at.split(",")):
        for who in whos:
            for r in runs[who]:
                c = r["curve"][k]
                print(f"{step:5d} {who:8s} {r['seed']:4d} " + " ".join(f"{c[x]:16.4f}" for x in cols))
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "args": vars(args)}, indent=1, default=str))
    maybe_record(args, "learning_rew_end", {"runs": runs}, title="Reward/termination model learning, ours vs the authors' code")


if __name__ == "__main__":
    main()
