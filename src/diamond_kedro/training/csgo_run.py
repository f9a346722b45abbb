"""One static-dataset world-model training run (spec §7.3, §7.4): the dynamics denoiser and (optionally) its
upsampler on a dataset ingested by :mod:`diamond_kedro.datasets` -- the CS:GO dataset (``csgo`` pipelines,
:class:`~diamond_kedro.csgo.config.CsgoConfig`) or any recorded gameplay (``static_world_model`` pipelines,
:class:`~diamond_kedro.datasets.config.StaticWorldModelConfig`). ``CsgoRun`` is the historic name of the class;
``StaticWorldModelRun`` is the same class. A :class:`~diamond_kedro.training.run_common.TrainingRun`, as
:class:`diamond_kedro.training.run.AtariRun` is: same run folder, state file and commit protocol.

Actions follow the dataset's index (``discrete`` ids, ``multi_hot`` or ``continuous`` vectors; the CS:GO data
is multi-hot 51); the dynamics model's action embedding has ``dim`` rows (a lookup for ids, a bias-free linear
map for vectors). Without an upsampler (``dataset.low_res_size: null``) the epoch trains the dynamics model
alone, on the frames of ``dataset.frame_size``.

A run lives in ``<run.root>/<run key>/`` (``csgo_<run.name>`` or ``<dataset.name>_<run.name>``)::

    checkpoints/state.pt   models, optimisers, LR schedules, counters, RNGs (incl. the samplers'), written atomically
    metrics.json, curves/  the latest epoch's metrics and learning curves (``dvc metrics/plots``)
    media/                 imagination videos (also MLflow artifacts)

An epoch is ``begin_epoch`` -> ``train_denoiser`` -> ``train_upsampler`` -> ``evaluate`` -> ``commit``
(``CsgoRun.run_epoch``); nothing is durable until ``commit`` rewrites ``state.pt`` (the data is static, so
there is nothing to roll back). Each optimiser step accumulates ``grad_acc_steps`` batches (16 x 8 dynamics at 30x56, 4 x 8 upsampler
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
  for the CUDA context (~0.5 GB), cuDNN workspaces and allocator fragmentation. ``run.amp`` (bf16 autocast)
  roughly halves the activations. Gradient accumulation (x8) is what keeps activations at one micro-batch
  while the effective batches are 128 / 32.
No GPU was available to confirm these figures with ``torch.cuda.max_memory_allocated``.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from diamond_kedro.builders import CSGO_ACTION, CSGO_STATE_FORMAT, build_models
from diamond_kedro.csgo.config import CsgoConfig
from diamond_kedro.csgo.generate import imagine, imagine_dynamics, to_uint8_frames
from diamond_kedro.datasets.writer import ActionSpec, DatasetError, DatasetNotIngested, DatasetPaths, load_index
from diamond_kedro.replay.batch import Batch
from diamond_kedro.replay.sampler import SegmentSampler, collate_windows, test_windows
from diamond_kedro.replay.store import ReplayStore
from diamond_kedro.reporting import EpochReport
from diamond_kedro.training.run_common import (
    Component,
    BaseRunPaths,
    RunIsOver,
    RunStateMismatch,
    TrainingRun,
    test_losses,
)

log = logging.getLogger(__name__)

MODELS = ("denoiser", "upsampler")
CURVE_KEYS = (
    "denoiser/train/loss_denoising",
    "upsampler/train/loss_denoising",
    "denoiser/test/loss_denoising",
    "upsampler/test/loss_denoising",
)


def csgo_run_key(cfg: CsgoConfig) -> str:
    return cfg.run_key


def move_optimizer_state(optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    """Move AdamW's moment tensors (not the ``step`` counters, which torch keeps on the CPU) to ``device``.

    The copies are ``non_blocking`` (they overlap); a copy from the GPU to the host may still be in flight
    when it returns, and the host could read (save, step) the tensor before its bytes arrived, so that
    direction ends with one synchronisation."""
    from_gpu: set[torch.device] = set()
    for state in optimizer.state.values():
        for k, v in state.items():
            if k != "step" and isinstance(v, torch.Tensor):
                if v.device.type == "cuda" and device.type == "cpu":
                    from_gpu.add(v.device)
                state[k] = v.to(device, non_blocking=True)
    for source in from_gpu:
        torch.cuda.synchronize(source)


# A CS:GO run folder has only the common files (the data is the ingested dataset, outside the run).
CsgoRunPaths = BaseRunPaths


@dataclass(eq=False)
class IngestedDataset:
    """A static dataset as the catalog holds it (``csgo_dataset``, ``static_dataset``): the folder an ingest
    pipeline wrote, its index, and its Arrow stores by (resolution, split) (``low_res``/``full_res``,
    ``train``/``test``), opened read-only."""

    root: Path
    index: dict[str, Any]
    stores: dict[tuple[str, str], ReplayStore]


def open_ingested_dataset(cfg: CsgoConfig, require_episodes: bool = True) -> IngestedDataset:
    """The ingested dataset ``cfg`` trains on, its stores opened read-only and checked against the config (an
    upsampler needs the low-resolution store, the two resolutions must agree, the train split has episodes
    unless ``require_episodes`` is false: what an ingest that skipped every file leaves is still a dataset)."""
    ingest = "csgo_ingest" if isinstance(cfg, CsgoConfig) else "static_world_model_ingest"
    data = DatasetPaths(cfg.dataset_dir)
    index = load_index(data.root, hint=f"kedro run --pipelines={ingest}")
    has_low = index.get("low_res_size", True) is not None
    if (cfg.upsampling_factor is not None) != has_low:
        raise RunStateMismatch(
            f"{data.index} was ingested {'with' if has_low else 'without'} a low-resolution store, but the "
            f"config {'has no' if has_low else 'has an'} upsampler: re-ingest or change dataset.low_res_size"
        )
    resolutions = ("low_res", "full_res") if cfg.upsampling_factor is not None else ("low_res",)
    stores = {}
    for res in resolutions:
        for split in ("train", "test"):
            path = data.store(res, split)
            if not path.is_dir():
                raise DatasetNotIngested(f"{path} does not exist: ingest the dataset first ({ingest})")
            stores[(res, split)] = ReplayStore(path, create=False)
    if "full_res" in resolutions:
        for split in ("train", "test"):
            lo, hi = stores[("low_res", split)], stores[("full_res", split)]
            if not np.array_equal(lo.lengths, hi.lengths):
                raise DatasetError(f"{lo.root} and {hi.root} disagree on their episodes: re-run {ingest} to repair them")
    if require_episodes and stores[("low_res", "train")].num_episodes == 0:
        raise DatasetError(f"{data.store('low_res', 'train')} has no episodes: nothing to train on")
    return IngestedDataset(data.root, index, stores)


@dataclass
class CsgoCounters:
    epoch: int = 0  # last committed epoch
    num_batch_train: dict[str, int] = field(default_factory=lambda: {m: 0 for m in MODELS})  # optimiser steps
    wall_time_s: float = 0.0


class CsgoRunIsOver(RunIsOver):
    """Raised by ``begin_epoch`` when every epoch of the run is committed."""


class CsgoRun(TrainingRun):
    """State and phases of one CS:GO training run. Use ``CsgoRun.open(cfg)``; see the module docstring
    (and :mod:`diamond_kedro.training.run_common` for the parts shared with the Atari run)."""

    kind = "csgo"
    curve_keys = CURVE_KEYS
    over_error = CsgoRunIsOver
    model_keys = ("data.frame_size", "data.low_res_size", "dataset.frame_size", "dataset.low_res_size")
    counters: CsgoCounters

    def __init__(self, cfg: CsgoConfig, root: Path | None = None) -> None:
        super().__init__(cfg, cfg.run_key, root)
        self.kind = cfg.report_kind  # EpochReport.kind: names the MLflow experiment (diamond-<kind>)
        self.dataset = open_ingested_dataset(cfg)
        self.index, self.stores = self.dataset.index, self.dataset.stores
        self.action = ActionSpec.from_dict(self.index["action"])
        self.model_names = MODELS if cfg.upsampling_factor is not None else ("denoiser",)

        # Models live on the CPU between their phases when offloading (spec §7.4).
        self.home = torch.device("cpu") if cfg.run.offload else self.device
        self.models = {k: m.to(self.home) for k, m in build_models(cfg, self.action).items()}
        self._compile(*(m.inner_model for m in self.models.values()))  # run.compile, as Atari's denoiser
        self._make_optimizers(self.models)
        # two streams whether or not there is an upsampler: the dynamics model draws the same batches either way
        seeds = np.random.SeedSequence(cfg.run.seed).spawn(len(MODELS))
        self.samplers = {  # under torchrun: this rank's rows of each global batch (``distributed``)
            name: self.dist.shard(SegmentSampler(
                self.stores[("low_res", "train")],
                batch_size=getattr(cfg, name).training.batch_size,
                seq_len=self.seq_len(name),
                padding="left",
                weights=None,  # spec §7.4: sample weights ignored; equal-length episodes -> uniform
                generator=np.random.default_rng(seed),
                device=self.device,
                pin_memory=self.device.type == "cuda",
            ))
            for name, seed in zip(MODELS, seeds)
            if name in self.model_names
        }
        self.counters = CsgoCounters(num_batch_train={m: 0 for m in self.model_names})

    def seq_len(self, name: str) -> int:
        m = getattr(self.cfg, name).model
        return m.num_steps_conditioning + 1 + m.num_autoregressive_steps  # dynamics 9, upsampler 3

    # -- resuming ----------------------------------------------------------------------------------
    def _own_rng_state(self) -> dict[str, Any]:
        return {"samplers": {k: s.rng.bit_generator.state for k, s in self.samplers.items()}}

    def _set_own_rng_state(self, state: dict[str, Any]) -> None:
        for k, s in self.samplers.items():
            s.rng.bit_generator.state = state["samplers"][k]

    def _state_dict(self) -> dict[str, Any]:
        return {
            "format": CSGO_STATE_FORMAT,
            "version": 1,
            **super()._state_dict(),
            "action": self.action.to_dict(),
            "models": {k: m.state_dict() for k, m in self.models.items()},
        }

    def _check_state(self, state: Any, path: Path) -> None:
        if not isinstance(state, dict) or state.get("format") != CSGO_STATE_FORMAT:
            raise RunStateMismatch(f"{path} is not a diamond-kedro CS:GO / static world-model run state")
        saved = state.get("action", CSGO_ACTION.to_dict())
        if saved != self.action.to_dict():
            raise RunStateMismatch(f"{path} was trained with actions {saved}, the dataset now has {self.action.to_dict()}")

    def _check_parameters(self, saved: dict[str, Any], path: Path) -> None:
        """A run saved before ``run.amp`` / ``run.compile`` existed had ``run.bf16`` and no compile: the same
        settings (amp = bf16, compile off), not a change to warn about on resume."""
        run = dict(saved.get("run") or {})
        if "bf16" in run:
            run["amp"] = run.pop("bf16")
            run.setdefault("compile", False)
            saved = {**saved, "run": run}
        super()._check_parameters(saved, path)

    def _load_components(self, state: dict[str, Any], path: Path) -> None:
        for k in self.model_names:
            try:
                self.models[k].load_state_dict(state["models"][k], strict=True)
            except RuntimeError as exc:
                raise RunStateMismatch(f"{path}: the {k} does not match the configured model (parameters changed?): {exc}") from exc

    # -- epoch bookkeeping -----------------------------------------------------------------------
    @property
    def total_epochs(self) -> int:
        return self.cfg.run.num_epochs

    def model(self, name: str) -> torch.nn.Module:
        if name not in self.models:
            raise KeyError(f"run {self.key} has no {name} (models: {', '.join(self.models)})")
        return self.models[name]

    def run_epoch(self) -> EpochReport:
        """One whole epoch, every phase in order; returns its committed report. The same calls, on the same
        artefacts, as the ``csgo`` / ``static_world_model`` pipelines' nodes."""
        self.begin_epoch()
        metrics = {f"{name}_metrics": self.train_component(self.component(name), self.dataset) for name in self.model_names}
        metrics["evaluate_metrics"], media = self.evaluate()
        return self.commit(metrics, media)

    # -- devices ---------------------------------------------------------------------------------
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

    # -- batches ---------------------------------------------------------------------------------
    def _windows_batch(self, name: str, split: str, ids: Any, starts: Any) -> tuple[Batch, torch.Tensor | None]:
        """The model's batch for these windows: low-res frames (dynamics), or full-res frames + the matching
        low-res frames (upsampler; the two stores share episode ids)."""
        s = self.seq_len(name)
        pin = self.device.type == "cuda"  # non-blocking copies from pinned staging buffers
        low = collate_windows(self.stores[("low_res", split)], ids, starts, s, self.device, pin_memory=pin)
        if name == "denoiser":
            return low, None
        full = collate_windows(self.stores[("full_res", split)], ids, starts, s, self.device, pin_memory=pin)
        return full, low.obs

    def sample_batch(self, name: str) -> tuple[Batch, torch.Tensor | None]:
        ids, starts = self.samplers[name].draw_windows()
        return self._windows_batch(name, "train", ids, starts)

    def _loss(self, name: str, batch: Batch, low: torch.Tensor | None, compute_loss: Any = None) -> tuple[torch.Tensor, dict[str, float]]:
        compute_loss = compute_loss or self.models[name].compute_loss
        if name == "denoiser":
            return compute_loss(batch)
        return compute_loss(batch, low)

    # -- training (spec §7.4) --------------------------------------------------------------------
    def train_component(self, component: Component, dataset: IngestedDataset) -> dict[str, float]:
        """This epoch's updates of ``component`` (the dynamics ``denoiser`` or the ``upsampler``) on windows of
        ``dataset``'s train split (spec §7.4); returns the ``<name>_metrics``."""
        name = self.own(component).name
        if dataset is not self.dataset:  # the samplers' seeded generators (resumable state) draw from it
            raise ValueError(f"run {self.key} trains on the dataset it was opened on ({self.dataset.root})")
        return self._train_phase(name, lambda: self._train_model(component))

    def train_model(self, name: str) -> dict[str, float]:
        return self.train_component(self.component(name), self.dataset)

    def _train_model(self, component: Component) -> dict[str, float]:
        name, model = component.name, component.model

        def loss_fn() -> tuple[torch.Tensor, dict[str, float]]:
            batch, low = self.sample_batch(name)
            return self._loss(name, batch, low, compute_loss)

        with self.on_device(name):
            compute_loss = self.dist.loss(model)  # DDP under torchrun, built once the model is on its device
            model.train()
            # each update accumulates grad_acc_steps micro-batches (one all-reduce per update under DDP)
            return self._train_steps(component, loss_fn, getattr(self.cfg, name).training.grad_acc_steps,
                                     accumulating=compute_loss.accumulating)

    def train_denoiser(self) -> dict[str, float]:
        return self.train_model("denoiser")

    def train_upsampler(self) -> dict[str, float]:
        """Train the upsampler (nothing, returning {}, when the run has none)."""
        if "upsampler" not in self.model_names:
            return {}
        return self.train_model("upsampler")

    # -- evaluation ------------------------------------------------------------------------------
    @torch.no_grad()
    def test_losses(self, name: str) -> dict[str, float]:
        """Mean loss over the deterministic traversal of the test split (spec §1.8, §7.4)."""
        e = self.cfg.evaluate
        bs = e.test_batch_size or getattr(self.cfg, name).training.batch_size
        windows = test_windows(self.stores[("low_res", "test")].lengths, self.seq_len(name))
        batches = [windows[i : i + bs] for i in range(0, len(windows), bs)]
        if e.max_test_batches is not None:
            batches = batches[: e.max_test_batches]
        test = (self._windows_batch(name, "test", [w[0] for w in part], [w[1] for w in part]) for part in batches)
        with self.on_device(name), self._autocast():
            out, _ = test_losses(self.models[name], test, lambda b: self._loss(name, *b))
        out[f"num_batch_test_{name}"] = len(batches)
        return out

    @torch.no_grad()
    def imagine_test_episode(self) -> tuple[np.ndarray, np.ndarray, int] | None:
        """Imagine from a test episode's first L frames with its recorded actions (at the output resolution:
        the upsampler's when there is one). Returns (real, imagined) uint8 (T, H, W, 3) and the episode id."""
        e = self.cfg.evaluate
        low_store = self.stores[("low_res", "test")]
        if low_store.num_episodes == 0:
            return None
        eid = min(e.video_episode, low_store.num_episodes - 1)
        n = self.cfg.denoiser.model.num_steps_conditioning
        length = int(low_store.lengths[eid])
        horizon = min(e.video_horizon, length - n)
        if horizon < 1:
            return None
        low = collate_windows(low_store, [eid], [0], n + horizon, self.device)
        with self.on_device(*self.model_names):
            for m in self.models.values():
                m.eval()
            if "upsampler" in self.model_names:
                full = collate_windows(self.stores[("full_res", "test")], [eid], [0], n + horizon, self.device)
                _, imagined = imagine(
                    self.models["denoiser"], self.models["upsampler"],
                    low.obs[:, :n], full.obs[:, n - 1], low.act[:, : n + horizon - 1], preset=e.sampler_preset,
                )
            else:
                full = low
                imagined = imagine_dynamics(self.models["denoiser"], low.obs[:, :n], low.act[:, : n + horizon - 1],
                                            preset=e.sampler_preset)
        return to_uint8_frames(full.obs[0, n - 1 :]), to_uint8_frames(imagined[0]), eid

    @torch.no_grad()
    def imagination_video(self, imagined: tuple[np.ndarray, np.ndarray, int] | None = None) -> Path | None:
        """real | imagined | diff video of :meth:`imagine_test_episode` (computed here unless given)."""
        from diamond_kedro.evaluation.video import write_comparison_video

        imagined = imagined if imagined is not None else self.imagine_test_episode()
        if imagined is None:
            return None
        real_u8, imagined_u8, eid = imagined
        path = self.paths.media / f"imagination_epoch_{self.epoch:05d}.mp4"
        written = write_comparison_video(real_u8[1:], imagined_u8, path, fps=self.cfg.video_fps, scale=1)
        file_id = self.index["splits"]["test"][eid] if eid < len(self.index["splits"]["test"]) else "?"
        log.info("Imagination video of test episode %d (%s): %s", eid, file_id, written)
        return written

    def evaluate(self, *components: Component, dataset: IngestedDataset | None = None) -> tuple[dict[str, float], list[Path]]:
        """Every ``evaluate.every`` epochs and at the last: test losses over ``dataset``'s test split, fidelity at
        the configured horizons and an imagination video of the run's models (``components``, checked to be its
        own; defaults: the run's). Returns ``evaluate_metrics`` and the epoch's media (empty on other epochs)."""
        for c in components:
            self.own(c)
        if dataset is not None and dataset is not self.dataset:
            raise ValueError(f"run {self.key} is evaluated on the dataset it was opened on ({self.dataset.root})")
        if not self.should_evaluate() or not self.dist.is_main:  # rank 0 writes the video and logs
            return {}, []
        metrics: dict[str, float] = {}
        media: list[Path] = []
        with self._timed("evaluate"):
            if self.stores[("low_res", "test")].num_episodes:
                for name in self.model_names:
                    m = self.test_losses(name)
                    metrics.update({f"{name}/test/{k}": v for k, v in m.items()})
                horizons = self.cfg.evaluate.fidelity_horizons
                if self.cfg.evaluate.video or horizons:
                    imagined = self.imagine_test_episode()
                    if imagined is not None and horizons:
                        m = fidelity_at_horizons(imagined[0], imagined[1], horizons)
                        metrics.update({f"fidelity/{k}": v for k, v in m.items()})
                    if self.cfg.evaluate.video:
                        video = self.imagination_video(imagined)
                        if video is not None:
                            media.append(video)
        return metrics, media


def fidelity_at_horizons(real: np.ndarray, imagined: np.ndarray, horizons: list[int]) -> dict[str, float]:
    """PSNR and SSIM (dB / [0, 1]) of the imagined frame ``h`` steps after the context against the real one,
    next to the copy-the-last-context-frame baseline. ``real`` (T + 1, H, W, 3) uint8 starts with the last
    context frame; ``imagined`` (T, H, W, 3). Horizons beyond T are left out."""
    from diamond_kedro.evaluation.image_metrics import finite_mean_db, psnr, ssim, uint8_hwc_to_chw

    out: dict[str, float] = {}
    t = len(imagined)
    for h in horizons:
        if h < 1 or h > t:
            continue
        truth = uint8_hwc_to_chw(real[h : h + 1])
        for name, pred in (("", uint8_hwc_to_chw(imagined[h - 1 : h])), ("copy_last_", uint8_hwc_to_chw(real[:1]))):
            out[f"psnr_{name}h{h}"] = finite_mean_db(psnr(pred, truth))  # uint8: peak 255; identical -> 100 dB
            out[f"ssim_{name}h{h}"] = float(ssim(pred, truth).mean())
    return out


# The class serves every static-dataset world model; ``CsgoRun`` stays its name for existing callers.
StaticWorldModelRun = CsgoRun


def run_csgo_epoch(cfg: CsgoConfig) -> EpochReport:
    """One whole epoch outside Kedro (notebooks, scripts)."""
    run = CsgoRun.open(cfg)
    try:
        return run.run_epoch()
    finally:
        run.close()
