"""World-model fidelity on held-out episodes: open-loop imagination against the real frames.

From a real context of L frames taken from a test episode, the denoiser imagines the next frames
*open-loop* with the actions that were really taken (its own frames are fed back, the real ones are
never seen again), exactly as in imagination (spec §5.2) except that the agent's actions are replaced
by the recorded ones. Each imagined frame is compared with the real frame at the same step:

* per-step PSNR and SSIM curves (``evaluation/image_metrics.py``), step h = the frame h steps ahead;
* the same curves for the *copy-the-last-frame* baseline (predict x_{L-1} for every future step): a
  world model that does not beat it at horizon 1 has learnt nothing about the dynamics;
* reward-sign and termination accuracy with confusion matrices (rows = true class), the reward/end
  model being used as in imagination (spec §4.3): its LSTM is burnt in on the L-1 real context
  transitions, then fed ``(frame, action, next frame)`` one step at a time. Two drives are scored:
  ``imagined`` - along the imagined frames (what the agent is trained on), and ``real`` - along the
  real frames (teacher forcing: the classifier's own accuracy, without frame errors). The predicted
  class is the argmax of the logits (imagination samples from them; accuracy scores their mode).

Terminal transitions are included: the frame after an episode's last step is its stored
``final_obs``, so the termination matrix can have an "end" row. Horizons and contexts: contexts are
drawn (seeded) among starts where the longest horizon fits in the episode, topped up with shorter
ones when there are not enough; each step's statistics average over the contexts that reach it, and
``fidelity/num_contexts_h{h}`` says how many did.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from diamond_kedro.evaluation.image_metrics import psnr, ssim
from diamond_kedro.models.denoiser import Denoiser
from diamond_kedro.models.diffusion_sampler import DiffusionSampler, DiffusionSamplerConfig
from diamond_kedro.models.rew_end_model import RewEndModel, confusion_matrix
from diamond_kedro.replay.store import ReplayStore

PAPER_HORIZONS = (1, 15, 50)  # 15 = the imagination horizon H of the paper; 50 = a long open-loop test
MAX_DB = 100.0  # identical frames have PSNR = +inf; clamped so that curves average to finite numbers


@dataclass(frozen=True)
class Context:
    """One open-loop test: episode, first context frame, number of future steps with a real frame."""

    episode_id: int
    start: int
    length: int


@dataclass
class FidelityResult:
    """Metrics (flat, ``fidelity/...``), per-step curves, confusion matrices and one rollout for a video."""

    horizons: tuple[int, ...]
    metrics: dict[str, float]
    curves: dict[str, np.ndarray]  # psnr, ssim, psnr_copy_last, ssim_copy_last: (H,); count: (H,) int
    confusion: dict[str, np.ndarray]  # rew_imagined (3,3), end_imagined (2,2), rew_real, end_real
    video_real: np.ndarray  # (T, H, W, 3) uint8, real future frames of the first context
    video_imagined: np.ndarray  # (T, H, W, 3) uint8, the imagined ones
    contexts: list[Context] = field(default_factory=list)

    def to_dict(self) -> dict:
        """JSON-serialisable summary (no frames)."""
        return {
            "horizons": list(self.horizons),
            "metrics": self.metrics,
            "curves": {k: [None if not math.isfinite(x) else float(x) for x in v] for k, v in self.curves.items()},
            "confusion": {k: v.tolist() for k, v in self.confusion.items()},
            "confusion_rows": "true class",
            "rew_classes": ["-1", "0", "+1"],
            "end_classes": ["continue", "end"],
            "contexts": [[c.episode_id, c.start, c.length] for c in self.contexts],
        }

    def write_json(self, path: str | Path) -> Path:
        from diamond_kedro.utils.atomic import atomic_write_text

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2))
        return path


# --------------------------------------------------------------------------------------------
# choosing the contexts
# --------------------------------------------------------------------------------------------


def _frames_available(store: ReplayStore, index: int) -> tuple[int, int]:
    """(episode id, number of frames incl. the final observation when the episode has one)."""
    eid = store.episode_ids[index]
    n = int(store.lengths[index])
    if store.is_finished(eid):
        n += int(store.load_episode(eid).final_obs is not None)
    return eid, n


def choose_contexts(
    store: ReplayStore, num_conditioning: int, max_horizon: int, num_contexts: int, seed: int = 0
) -> list[Context]:
    """Seeded choice of contexts: starts where ``max_horizon`` future frames exist first, then shorter ones.

    An episode of n frames (final observation included) offers starts s = 0 .. n-L-1 (at least one real
    frame to predict); start s reaches min(max_horizon, n-L-s) steps. Empty when no episode has L+1 frames.
    """
    if num_conditioning < 1 or max_horizon < 1 or num_contexts < 0:
        raise ValueError(
            f"num_conditioning, max_horizon must be >= 1 and num_contexts >= 0, "
            f"got {num_conditioning}, {max_horizon}, {num_contexts}"
        )
    L = num_conditioning
    full, partial = [], []
    for i in range(store.num_episodes):
        eid, n = _frames_available(store, i)
        for s in range(0, n - L):
            length = min(max_horizon, n - L - s)
            (full if length == max_horizon else partial).append(Context(eid, s, length))
    rng = np.random.default_rng(seed)
    chosen: list[Context] = []
    for pool in (full, partial):
        k = min(num_contexts - len(chosen), len(pool))
        if k > 0:
            chosen.extend(pool[j] for j in sorted(rng.choice(len(pool), size=k, replace=False)))
    return chosen


# --------------------------------------------------------------------------------------------
# the rollouts
# --------------------------------------------------------------------------------------------


def _to_model(u8: np.ndarray, device: torch.device) -> Tensor:
    """uint8 (..., H, W, 3) -> float (..., 3, H, W) in [-1, 1]."""
    return torch.as_tensor(np.ascontiguousarray(u8), device=device).movedim(-1, -3).float().div(127.5).sub(1)


def _to_uint8(x: Tensor) -> np.ndarray:
    """float (..., 3, H, W) in [-1, 1] -> uint8 (..., H, W, 3) (the sampler's frames are already 8-bit)."""
    return x.add(1).mul(127.5).round().clamp(0, 255).to(torch.uint8).movedim(-3, -1).cpu().numpy()


def _collate(store: ReplayStore, contexts: Sequence[Context], L: int, H: int, device: torch.device):
    """Real frames (B, L+H, 3, h, w), actions (B, L-1+H), reward/end targets (B, H), valid mask (B, H)."""
    obs, act, rew, end, valid = [], [], [], [], []
    for c in contexts:
        ep = store.load_episode(c.episode_id)
        frames = np.asarray(ep.obs)
        if ep.final_obs is not None:
            frames = np.concatenate([frames, np.asarray(ep.final_obs)[None]])
        window = frames[c.start : c.start + L + c.length]
        pad = L + H - window.shape[0]
        obs.append(np.concatenate([window, np.zeros((pad, *window.shape[1:]), np.uint8)]))
        a = np.asarray(ep.act)[c.start : c.start + L - 1 + c.length]  # index <= T-1: always recorded
        act.append(np.concatenate([a, np.zeros(L - 1 + H - a.shape[0], np.int64)]))
        # transition t of the rollout goes from frame start+L-1+t to frame start+L+t
        sl = slice(c.start + L - 1, c.start + L - 1 + c.length)
        r = np.sign(np.asarray(ep.rew)[sl]).astype(np.int64) + 1
        e = np.asarray(ep.end)[sl].astype(np.int64)
        rew.append(np.pad(r, (0, H - c.length)))
        end.append(np.pad(e, (0, H - c.length)))
        valid.append(np.arange(H) < c.length)
    as_t = lambda xs, dt: torch.as_tensor(np.stack(xs), dtype=dt, device=device)  # noqa: E731
    return (
        _to_model(np.stack(obs), device),
        as_t(act, torch.long),
        as_t(rew, torch.long),
        as_t(end, torch.long),
        as_t(valid, torch.bool),
    )


@torch.no_grad()
def imagine_open_loop(sampler: DiffusionSampler, context: Tensor, actions: Tensor, horizon: int) -> Tensor:
    """Batched open-loop imagination. context (B, L, 3, h, w) real frames; actions (B, L-1+horizon)
    recorded actions, ``actions[:, i]`` taken on frame i. Returns (B, horizon, 3, h, w): step t is
    generated from frames t .. t+L-1 (real, then imagined) and actions t .. t+L-1."""
    L = context.shape[1]
    if actions.shape[1] < L - 1 + horizon:
        raise ValueError(f"need {L - 1 + horizon} actions for horizon {horizon}, got {actions.shape[1]}")
    frames = context
    out = []
    for t in range(horizon):
        nxt, _ = sampler.sample(frames[:, -L:], actions[:, t : t + L])
        out.append(nxt)
        frames = torch.cat([frames, nxt.unsqueeze(1)], dim=1)[:, -L:]
    return torch.stack(out, dim=1)


@torch.no_grad()
def _rew_end_predictions(model: RewEndModel, frames: Tensor, actions: Tensor, L: int, H: int) -> tuple[Tensor, Tensor]:
    """Argmax reward class and end class (B, H) along ``frames`` (B, L+H, ...), burn-in on the context."""
    hx_cx = model.burn_in(frames[:, :L], actions[:, :L]) if L > 1 else None
    rew, end = [], []
    for t in range(H):
        i = L - 1 + t
        logits_rew, logits_end, hx_cx = model(
            frames[:, i : i + 1], actions[:, i : i + 1], frames[:, i + 1 : i + 2], hx_cx
        )
        rew.append(logits_rew[:, 0].argmax(-1))
        end.append(logits_end[:, 0].argmax(-1))
    return torch.stack(rew, 1), torch.stack(end, 1)


def world_model_fidelity(
    denoiser: Denoiser,
    rew_end_model: RewEndModel | None,
    store: ReplayStore,
    sampler_cfg: DiffusionSamplerConfig | None = None,
    horizons: Sequence[int] = PAPER_HORIZONS,
    num_contexts: int = 64,
    batch_size: int = 32,
    seed: int = 0,
) -> FidelityResult:
    """Open-loop fidelity of the world model on the episodes of ``store`` (see the module docstring).

    Runs on the denoiser's device; both models are put in eval mode and restored. Raises ValueError when
    no episode of the store has more than L frames (nothing to predict).
    """
    horizons = tuple(sorted({int(h) for h in horizons}))
    if not horizons or horizons[0] < 1:
        raise ValueError(f"fidelity horizons must be positive integers, got {horizons}")
    if num_contexts < 1 or batch_size < 1:
        raise ValueError(f"num_contexts and batch_size must be >= 1, got {num_contexts}, {batch_size}")
    L, H = denoiser.num_steps_conditioning, horizons[-1]
    contexts = choose_contexts(store, L, H, num_contexts, seed)
    if not contexts:
        raise ValueError(f"no episode of the store {store.root} has more than {L} frames: nothing to imagine")
    device = denoiser.device
    sampler = DiffusionSampler(denoiser, sampler_cfg or DiffusionSamplerConfig())
    modes = [(m, m.training) for m in (denoiser, rew_end_model) if m is not None]
    for m, _ in modes:
        m.eval()

    sums = {k: torch.zeros(H, dtype=torch.float64) for k in ("psnr", "ssim", "psnr_copy_last", "ssim_copy_last")}
    count = torch.zeros(H, dtype=torch.long)
    cms = {"rew_imagined": torch.zeros(3, 3, dtype=torch.long), "end_imagined": torch.zeros(2, 2, dtype=torch.long)}
    cms.update({"rew_real": torch.zeros(3, 3, dtype=torch.long), "end_real": torch.zeros(2, 2, dtype=torch.long)})
    video: tuple[np.ndarray, np.ndarray] | None = None
    try:
        for b0 in range(0, len(contexts), batch_size):
            part = contexts[b0 : b0 + batch_size]
            real, act, rew, end, valid = _collate(store, part, L, H, device)
            imagined = imagine_open_loop(sampler, real[:, :L], act, H)  # (B, H, 3, h, w)
            target = real[:, L:]
            copy_last = real[:, L - 1 : L].expand_as(target)
            flat = lambda x: x.flatten(0, 1)  # noqa: E731
            per_image = {
                "psnr": psnr(flat(imagined), flat(target), (-1.0, 1.0), max_db=MAX_DB),
                "ssim": ssim(flat(imagined), flat(target), (-1.0, 1.0)),
                "psnr_copy_last": psnr(flat(copy_last), flat(target), (-1.0, 1.0), max_db=MAX_DB),
                "ssim_copy_last": ssim(flat(copy_last), flat(target), (-1.0, 1.0)),
            }
            mask = valid.cpu()
            for k, v in per_image.items():
                sums[k] += (v.view(len(part), H).cpu().double() * mask).sum(0)
            count += mask.sum(0)
            if rew_end_model is not None:
                drives = {"imagined": torch.cat([real[:, :L], imagined], dim=1), "real": real}
                for name, frames in drives.items():
                    pred_rew, pred_end = _rew_end_predictions(rew_end_model, frames, act, L, H)
                    cms[f"rew_{name}"] += confusion_matrix(pred_rew[valid], rew[valid], 3).cpu()
                    cms[f"end_{name}"] += confusion_matrix(pred_end[valid], end[valid], 2).cpu()
            if video is None:
                n = part[0].length
                video = (_to_uint8(target[0, :n]), _to_uint8(imagined[0, :n]))
    finally:
        for m, was_training in modes:
            m.train(was_training)

    curves = {k: (v / count.clamp(min=1)).where(count > 0, torch.nan).numpy() for k, v in sums.items()}
    curves["count"] = count.numpy()
    metrics: dict[str, float] = {"fidelity/num_contexts": float(len(contexts))}
    for h in horizons:
        if count[h - 1] == 0:
            continue
        for k in ("psnr", "ssim", "psnr_copy_last", "ssim_copy_last"):
            metrics[f"fidelity/{k}_h{h}"] = float(curves[k][h - 1])
        metrics[f"fidelity/num_contexts_h{h}"] = float(count[h - 1])
    confusion = {}
    if rew_end_model is not None:
        confusion = {k: v.numpy() for k, v in cms.items()}
        for drive in ("imagined", "real"):
            suffix = "" if drive == "imagined" else "_real"
            for head in ("rew", "end"):
                cm = confusion[f"{head}_{drive}"]
                metrics[f"fidelity/{head}_accuracy{suffix}"] = float(np.trace(cm) / max(cm.sum(), 1))
    assert video is not None
    return FidelityResult(horizons, metrics, curves, confusion, video[0], video[1], contexts)


# --------------------------------------------------------------------------------------------
# pictures
# --------------------------------------------------------------------------------------------


def plot_fidelity_curves(result: FidelityResult, path: str | Path, title: str = "") -> Path:
    """PSNR and SSIM against the horizon, world model vs copy-last-frame baseline (PNG)."""
    from matplotlib.figure import Figure

    from diamond_kedro.evaluation.scores import _save_figure_atomic

    steps = np.arange(1, len(result.curves["psnr"]) + 1)
    fig = Figure(figsize=(9, 3.2))
    axes = fig.subplots(1, 2)
    for ax, key, label in ((axes[0], "psnr", "PSNR (dB)"), (axes[1], "ssim", "SSIM")):
        ax.plot(steps, result.curves[key], marker=".", label="world model")
        ax.plot(steps, result.curves[f"{key}_copy_last"], linestyle="--", color="gray", label="copy last frame")
        ax.set_xlabel("steps ahead (open loop)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend()
    if title:
        fig.suptitle(title)
    return _save_figure_atomic(fig, path)
