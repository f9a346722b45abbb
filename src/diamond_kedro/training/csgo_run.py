"""One CS:GO world-model training run (spec §7.3, §7.4): the dynamics denoiser and its upsampler on the static
dataset ingested by :mod:`diamond_kedro.csgo.ingest`. Mirrors :class:`diamond_kedro.training.run.AtariRun`.

A run lives in ``<run.root>/csgo_<run.name>/``::

    checkpoints/state.pt   models, optimisers, LR schedules, counters, RNGs (incl. the samplers'), written atomically
    metrics.json, curves/  the latest epoch's metrics and learning curves (``dvc metrics/plots``)
    media/                 imagination videos (also MLflow artifacts)

An epoch is ``begin_epoch`` -> ``train_denoiser`` -> ``train_upsampler`` -> ``evaluate`` -> ``commit``;
nothing is durable until ``commit`` rewrites ``state.pt`` (the data is static, so there is nothing to roll
back). Each optimiser step accumulates ``grad_acc_steps`` batches (16 x 8 dynamics at 30x56, 4 x 8 upsampler
at 150x280), clips the global norm at 10, steps AdamW and the warm-up schedule. Test losses over the test
split and an imagination video come every ``evaluate.every`` (20) epochs and at the last one.

Memory (paper size, fp32, one 24 GB GPU). With ``run.offload`` each model and its AdamW state sit on the
GPU only while that model trains (spec §7.4), so the peak is the larger of the two phases. Activations are
the tensors autograd saves for the backward, measured on CPU (``torch.autograd.graph.saved_tensors_hooks``
summing unique storages during one ``compute_loss`` at the paper's sizes, batch 1 and 2, weights subtracted):

* dynamics, 330.5 M parameters: weights 1.32 GB + gradients 1.32 GB + AdamW moments 2.64 GB = 5.29 GB;
  activations at 30x56 (padded 32x56), all 5 autoregressive steps held until the single backward:
  0.58 GB per sample -> 9.3 GB at batch 16. Peak ≈ 14.6 GB.
* upsampler, 51.1 M parameters: 0.82 GB (weights + gradients + moments); activations at 150x280 (padded
  152x280), 2 steps: 2.53 GB per sample -> 10.1 GB at batch 4. Peak ≈ 10.9 GB.
* without offloading the idle model stays resident: ≈ 15.5 GB / 16.2 GB. Either way < 24 GB, leaving room
  for the CUDA context (~0.5 GB), cuDNN workspaces and allocator fragmentation. ``run.bf16`` (autocast)
  roughly halves the activations. Gradient accumulation (x8) is what keeps activations at one micro-batch
  while the effective batches are 128 / 32.
No GPU was available to confirm these figures with ``torch.cuda.max_memory_allocated``.
"""

from __future__ import annotations

import json
import logging
import random
import time
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from diamond_kedro.csgo.config import CsgoConfig
from diamond_kedro.csgo.generate import imagine, to_uint8_frames
from diamond_kedro.csgo.ingest import CsgoDataPaths, load_index
from diamond_kedro.models.denoiser import Denoiser, DenoiserConfig, SigmaDistributionConfig
from diamond_kedro.models.unet import InnerModelConfig
from diamond_kedro.replay.batch import Batch
from diamond_kedro.replay.sampler import SegmentSampler, collate_windows, test_windows
from diamond_kedro.replay.store import ReplayStore
from diamond_kedro.reporting import EpochReport, emit, flatten
from diamond_kedro.training.optim import make_optimizer, make_warmup_scheduler
from diamond_kedro.training.run import MetricAccumulator, append_curve, resolve_device
from diamond_kedro.utils.atomic import atomic_torch_save, atomic_write_text

log = logging.getLogger(__name__)

MODELS = ("denoiser", "upsampler")
STATE_FORMAT = "diamond-kedro-csgo-run"
ACTION_DIM = 51
CURVE_KEYS = (
    "denoiser/train/loss_denoising",
    "upsampler/train/loss_denoising",
    "denoiser/test/loss_denoising",
    "upsampler/test/loss_denoising",
)


def csgo_run_key(cfg: CsgoConfig) -> str:
    return f"csgo_{cfg.run.name}"


def build_models(cfg: CsgoConfig) -> dict[str, Denoiser]:
    """The dynamics denoiser and the upsampler from the validated parameters (spec §7.3)."""
    d, u = cfg.denoiser, cfg.upsampler
    denoiser = Denoiser(
        DenoiserConfig(
            inner_model=InnerModelConfig(
                num_steps_conditioning=d.model.num_steps_conditioning,
                cond_channels=d.model.cond_channels,
                depths=list(d.model.depths),
                channels=list(d.model.channels),
                attn_depths=list(d.model.attn_depths),
                num_actions=ACTION_DIM,
                has_noise_cond_emb=True,
            ),
            sigma_data=d.model.sigma_data,
            sigma_offset_noise=d.model.sigma_offset_noise,
            num_autoregressive_steps=d.model.num_autoregressive_steps,
            noise_previous_obs=d.model.noise_previous_obs,
            sigma_distribution=SigmaDistributionConfig(**d.sigma_distribution.model_dump()),
        )
    )
    upsampler = Denoiser(
        DenoiserConfig(
            inner_model=InnerModelConfig(
                num_steps_conditioning=u.model.num_steps_conditioning,
                cond_channels=u.model.cond_channels,
                depths=list(u.model.depths),
                channels=list(u.model.channels),
                attn_depths=list(u.model.attn_depths),
                is_upsampler=True,
                has_noise_cond_emb=True,  # the authors' layout: the embedding exists and always receives 0
            ),
            sigma_data=u.model.sigma_data,
            sigma_offset_noise=u.model.sigma_offset_noise,
            num_autoregressive_steps=u.model.num_autoregressive_steps,
            upsampling_factor=u.model.upsampling_factor,
            sigma_distribution=SigmaDistributionConfig(**u.sigma_distribution.model_dump()),
        )
    )
    return {"denoiser": denoiser, "upsampler": upsampler}


def move_optimizer_state(optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    """Move AdamW's moment tensors (not the ``step`` counters, which torch keeps on the CPU) to ``device``."""
    for state in optimizer.state.values():
        for k, v in state.items():
            if k != "step" and isinstance(v, torch.Tensor):
                state[k] = v.to(device, non_blocking=True)


@dataclass(frozen=True)
class CsgoRunPaths:
    root: Path

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def state(self) -> Path:
        return self.checkpoints / "state.pt"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    @property
    def curves(self) -> Path:
        return self.root / "curves"

    @property
    def media(self) -> Path:
        return self.root / "media"

    @property
    def logged_marker(self) -> Path:
        return self.root / ".last_logged_epoch"

    @property
    def over_marker(self) -> Path:
        return self.root / ".run_is_over"


@dataclass
class CsgoCounters:
    epoch: int = 0  # last committed epoch
    num_batch_train: dict[str, int] = field(default_factory=lambda: {m: 0 for m in MODELS})  # optimiser steps
    wall_time_s: float = 0.0


class CsgoRunIsOver(RuntimeError):
    """Raised by ``begin_epoch`` when every epoch of the run is committed."""


class CsgoRun:
    """State and phases of one CS:GO training run. Use ``CsgoRun.open(cfg)``; see the module docstring."""

    def __init__(self, cfg: CsgoConfig, root: Path | None = None) -> None:
        self.cfg = cfg
        self.paths = CsgoRunPaths(Path(root) if root is not None else Path(cfg.run.root) / csgo_run_key(cfg))
        if cfg.run.num_threads:
            torch.set_num_threads(cfg.run.num_threads)
        self.device = resolve_device(cfg.run.device)
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        random.seed(cfg.run.seed)
        np.random.seed(cfg.run.seed)
        torch.manual_seed(cfg.run.seed)

        data = CsgoDataPaths(Path(cfg.data.out_dir))
        self.index = load_index(data.root)
        self.stores = {}
        for res in ("low_res", "full_res"):
            for split in ("train", "test"):
                path = data.store(res, split)
                if not path.is_dir():
                    raise FileNotFoundError(f"{path} does not exist: ingest the CS:GO dataset first (csgo_ingest)")
                self.stores[(res, split)] = ReplayStore(path, create=False)
        for split in ("train", "test"):
            lo, hi = self.stores[("low_res", split)], self.stores[("full_res", split)]
            if not np.array_equal(lo.lengths, hi.lengths):
                raise ValueError(f"{lo.root} and {hi.root} disagree on their episodes: re-run csgo_ingest to repair them")
        if self.stores[("low_res", "train")].num_episodes == 0:
            raise ValueError(f"{data.store('low_res', 'train')} has no episodes: nothing to train on")

        # Models live on the CPU between their phases when offloading (spec §7.4).
        self.home = torch.device("cpu") if cfg.run.offload else self.device
        self.models = {k: m.to(self.home) for k, m in build_models(cfg).items()}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.schedulers: dict[str, torch.optim.lr_scheduler.LRScheduler] = {}
        for name in MODELS:
            t = getattr(cfg, name).training
            self.optimizers[name] = make_optimizer(self.models[name], lr=t.lr, weight_decay=t.weight_decay, eps=t.eps)
            self.schedulers[name] = make_warmup_scheduler(self.optimizers[name], t.warmup_steps)
        seeds = np.random.SeedSequence(cfg.run.seed).spawn(len(MODELS))
        self.samplers = {
            name: SegmentSampler(
                self.stores[("low_res", "train")],
                batch_size=getattr(cfg, name).training.batch_size,
                seq_len=self.seq_len(name),
                padding="left",
                weights=None,  # spec §7.4: sample weights ignored; equal-length episodes -> uniform
                generator=np.random.default_rng(seed),
                device=self.device,
                pin_memory=self.device.type == "cuda",
            )
            for name, seed in zip(MODELS, seeds)
        }
        self.counters = CsgoCounters()
        self.pending: EpochReport | None = None
        self._epoch_start = 0.0

    # -- opening and resuming --------------------------------------------------------------------
    @classmethod
    def open(cls, cfg: CsgoConfig, root: Path | None = None) -> "CsgoRun":
        run = cls(cfg, root)
        if run.paths.state.exists():
            run._load_state()
        run._flush_unlogged_report()
        return run

    def seq_len(self, name: str) -> int:
        m = getattr(self.cfg, name).model
        return m.num_steps_conditioning + 1 + m.num_autoregressive_steps  # dynamics 9, upsampler 3

    def _rng_state(self) -> dict[str, Any]:
        state = {
            "python": random.getstate(),
            "numpy": np.random.get_state(),
            "torch": torch.get_rng_state(),
            "samplers": {k: s.rng.bit_generator.state for k, s in self.samplers.items()},
        }
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def _set_rng_state(self, state: dict[str, Any]) -> None:
        random.setstate(state["python"])
        np.random.set_state(state["numpy"])
        torch.set_rng_state(state["torch"])
        for k, s in self.samplers.items():
            s.rng.bit_generator.state = state["samplers"][k]
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])

    def _state_dict(self) -> dict[str, Any]:
        return {
            "format": STATE_FORMAT,
            "version": 1,
            "run_key": csgo_run_key(self.cfg),
            "config": self.cfg.model_dump(),
            "counters": asdict(self.counters),
            "models": {k: m.state_dict() for k, m in self.models.items()},
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()},
            "rng": self._rng_state(),
            "report": self.pending,
        }

    def _load_state(self) -> None:
        path = self.paths.state
        try:
            state = torch.load(path, map_location=self.home, weights_only=False)
        except Exception as exc:
            raise ValueError(f"cannot read run state {path}: {exc}") from exc
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise ValueError(f"{path} is not a diamond-kedro CS:GO run state")
        for k in MODELS:
            try:
                self.models[k].load_state_dict(state["models"][k], strict=True)
            except RuntimeError as exc:
                raise ValueError(f"{path}: the {k} does not match the configured model (parameters changed?): {exc}") from exc
            self.optimizers[k].load_state_dict(state["optimizers"][k])
            self.schedulers[k].load_state_dict(state["schedulers"][k])
        self.counters = CsgoCounters(**state["counters"])
        self._set_rng_state(state["rng"])
        self.pending = state.get("report")
        log.info("Resumed %s at epoch %d", csgo_run_key(self.cfg), self.counters.epoch)

    def _flush_unlogged_report(self) -> None:
        """A crash between ``commit``'s save and its emit leaves one report unlogged: send it now."""
        if self.pending is None:
            return
        logged = int(self.paths.logged_marker.read_text()) if self.paths.logged_marker.exists() else 0
        if self.pending.epoch > logged:
            emit(self.pending)
            atomic_write_text(self.paths.logged_marker, str(self.pending.epoch))
        self.pending = None

    # -- epoch bookkeeping -----------------------------------------------------------------------
    @property
    def epoch(self) -> int:
        return self.pending.epoch if self.pending is not None else self.counters.epoch

    @property
    def is_over(self) -> bool:
        return self.counters.epoch >= self.cfg.run.num_epochs

    @property
    def is_last_epoch(self) -> bool:
        return self.epoch == self.cfg.run.num_epochs

    def begin_epoch(self) -> int:
        if self.is_over:
            raise CsgoRunIsOver(f"run {csgo_run_key(self.cfg)} is over: all {self.counters.epoch} epochs are committed")
        self.pending = EpochReport(
            epoch=self.counters.epoch + 1,
            run_key=csgo_run_key(self.cfg),
            kind="csgo",
            params=flatten(self.cfg.model_dump()),
        )
        self._epoch_start = time.perf_counter()
        log.info("Epoch %d of %s", self.pending.epoch, csgo_run_key(self.cfg))
        return self.pending.epoch

    def _report(self) -> EpochReport:
        if self.pending is None:
            raise RuntimeError("no epoch in progress: call begin_epoch() first")
        return self.pending

    @contextmanager
    def on_device(self, *names: str) -> Iterator[None]:
        """Models (and their optimiser states) on the training device for the block, back home after (§7.4)."""
        if self.home == self.device:
            yield
            return
        for n in names:
            self.models[n].to(self.device)
            move_optimizer_state(self.optimizers[n], self.device)
        try:
            yield
        finally:
            for n in names:
                self.models[n].to(self.home)
                move_optimizer_state(self.optimizers[n], self.home)
            if self.device.type == "cuda":
                torch.cuda.empty_cache()

    def _autocast(self):
        if not self.cfg.run.bf16:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)

    # -- batches ---------------------------------------------------------------------------------
    def _windows_batch(self, name: str, split: str, ids: Any, starts: Any) -> tuple[Batch, torch.Tensor | None]:
        """The model's batch for these windows: low-res frames (dynamics), or full-res frames + the matching
        low-res frames (upsampler; the two stores share episode ids)."""
        s = self.seq_len(name)
        low = collate_windows(self.stores[("low_res", split)], ids, starts, s, self.device)
        if name == "denoiser":
            return low, None
        full = collate_windows(self.stores[("full_res", split)], ids, starts, s, self.device)
        return full, low.obs

    def sample_batch(self, name: str) -> tuple[Batch, torch.Tensor | None]:
        ids, starts = self.samplers[name].draw_windows()
        return self._windows_batch(name, "train", ids, starts)

    def _loss(self, name: str, batch: Batch, low: torch.Tensor | None) -> tuple[torch.Tensor, dict[str, float]]:
        with self._autocast():
            if name == "denoiser":
                return self.models[name].compute_loss(batch)
            return self.models[name].compute_loss(batch, low)

    # -- training (spec §7.4) --------------------------------------------------------------------
    def train_model(self, name: str) -> dict[str, float]:
        t = getattr(self.cfg, name).training
        model, opt, sched = self.models[name], self.optimizers[name], self.schedulers[name]
        acc = MetricAccumulator()
        grad_norm, lr = 0.0, opt.param_groups[0]["lr"]
        start = time.perf_counter()
        with self.on_device(name):
            model.train()
            for _ in _progress(t.steps_per_epoch, f"{name} (epoch {self.epoch})"):
                lr = opt.param_groups[0]["lr"]  # the lr this update uses
                opt.zero_grad(set_to_none=True)
                for _ in range(t.grad_acc_steps):
                    batch, low = self.sample_batch(name)
                    loss, metrics = self._loss(name, batch, low)
                    (loss / t.grad_acc_steps).backward()
                    acc.add(metrics)
                grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), t.max_grad_norm))
                opt.step()
                sched.step()
                self.counters.num_batch_train[name] += 1
        out = acc.result()
        out[f"num_batch_train_{name}"] = self.counters.num_batch_train[name]
        out["grad_norm_before_clip"] = grad_norm
        out["lr"] = lr
        report = self._report()
        report.add(f"{name}/train", out)
        report.metrics[f"{name}/wall_time_s"] = time.perf_counter() - start
        return out

    def train_denoiser(self) -> dict[str, float]:
        return self.train_model("denoiser")

    def train_upsampler(self) -> dict[str, float]:
        return self.train_model("upsampler")

    # -- evaluation ------------------------------------------------------------------------------
    def should_evaluate(self) -> bool:
        return self.epoch % self.cfg.evaluate.every == 0 or self.is_last_epoch

    @torch.no_grad()
    def test_losses(self, name: str) -> dict[str, float]:
        """Mean loss over the deterministic traversal of the test split (spec §1.8, §7.4)."""
        e = self.cfg.evaluate
        bs = e.test_batch_size or getattr(self.cfg, name).training.batch_size
        windows = test_windows(self.stores[("low_res", "test")].lengths, self.seq_len(name))
        batches = [windows[i : i + bs] for i in range(0, len(windows), bs)]
        if e.max_test_batches is not None:
            batches = batches[: e.max_test_batches]
        acc = MetricAccumulator()
        with self.on_device(name):
            self.models[name].eval()
            for part in batches:
                batch, low = self._windows_batch(name, "test", [w[0] for w in part], [w[1] for w in part])
                acc.add(self._loss(name, batch, low)[1])
        out = acc.result()
        out[f"num_batch_test_{name}"] = len(batches)
        return out

    @torch.no_grad()
    def imagination_video(self) -> Path | None:
        """Imagine from a test episode's first L frames with its recorded actions; real | imagined | diff video."""
        from diamond_kedro.evaluation.video import write_comparison_video

        e = self.cfg.evaluate
        low_store, full_store = self.stores[("low_res", "test")], self.stores[("full_res", "test")]
        if low_store.num_episodes == 0:
            return None
        eid = min(e.video_episode, low_store.num_episodes - 1)
        n = self.cfg.denoiser.model.num_steps_conditioning
        length = int(low_store.lengths[eid])
        horizon = min(e.video_horizon, length - n)
        if horizon < 1:
            return None
        low = collate_windows(low_store, [eid], [0], n + horizon, self.device)
        full = collate_windows(full_store, [eid], [0], n + horizon, self.device)
        with self.on_device(*MODELS):
            for m in self.models.values():
                m.eval()
            _, imagined = imagine(
                self.models["denoiser"], self.models["upsampler"],
                low.obs[:, :n], full.obs[:, n - 1], low.act[:, : n + horizon - 1], preset=e.sampler_preset,
            )
        path = self.paths.media / f"imagination_epoch_{self.epoch:05d}.mp4"
        real_u8, imagined_u8 = to_uint8_frames(full.obs[0, n:]), to_uint8_frames(imagined[0])
        written = write_comparison_video(real_u8, imagined_u8, path, fps=e.video_fps, scale=1)
        file_id = self.index["splits"]["test"][eid] if eid < len(self.index["splits"]["test"]) else "?"
        log.info("Imagination video of test episode %d (%s): %s", eid, file_id, written)
        return written

    def evaluate(self) -> dict[str, float]:
        if not self.should_evaluate():
            return {}
        start = time.perf_counter()
        report, metrics = self._report(), {}
        if self.stores[("low_res", "test")].num_episodes:
            for name in MODELS:
                m = self.test_losses(name)
                report.add(f"{name}/test", m)
                metrics.update({f"{name}/test/{k}": v for k, v in m.items()})
            if self.cfg.evaluate.video:
                video = self.imagination_video()
                if video is not None:
                    report.artifacts.append(("media", video))
        report.metrics["evaluate/wall_time_s"] = time.perf_counter() - start
        return metrics

    # -- commit ----------------------------------------------------------------------------------
    def commit(self) -> EpochReport:
        """Make the epoch durable (atomic ``state.pt``), then report it."""
        report = self._report()
        elapsed = time.perf_counter() - self._epoch_start
        self.counters.wall_time_s += elapsed
        report.metrics["duration"] = elapsed / 3600.0  # hours per epoch, as in spec §6.5
        report.metrics["epoch"] = float(report.epoch)
        self.counters.epoch = report.epoch
        atomic_torch_save(self._state_dict(), self.paths.state)
        self._write_dvc_metrics(report)
        if self.is_over:
            self.paths.over_marker.touch()
        emit(report)
        atomic_write_text(self.paths.logged_marker, str(report.epoch))
        self.pending = None
        log.info("Epoch %d of %s committed in %.1f s", report.epoch, csgo_run_key(self.cfg), elapsed)
        return report

    def _write_dvc_metrics(self, report: EpochReport) -> None:
        metrics = report.finite_metrics()
        atomic_write_text(self.paths.metrics, json.dumps({"epoch": report.epoch, **metrics}, indent=2, sort_keys=True))
        self.paths.curves.mkdir(parents=True, exist_ok=True)
        for key in CURVE_KEYS:
            if key in metrics:
                append_curve(self.paths.curves / f"{key.replace('/', '__')}.tsv", key, report.epoch, metrics[key])


def _progress(steps: int, desc: str) -> Iterator[int]:
    from tqdm.auto import tqdm

    return iter(tqdm(range(steps), desc=desc, leave=False, disable=steps == 0))


def run_csgo_epoch(cfg: CsgoConfig) -> EpochReport:
    """One whole epoch outside Kedro (notebooks, scripts)."""
    run = CsgoRun.open(cfg)
    run.begin_epoch()
    run.train_denoiser()
    run.train_upsampler()
    run.evaluate()
    return run.commit()
