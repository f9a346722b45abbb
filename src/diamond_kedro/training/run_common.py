"""What every training run shares, Atari (:class:`~diamond_kedro.training.run.AtariRun`) or CS:GO
(:class:`~diamond_kedro.training.csgo_run.CsgoRun`): the run folder, device and seeding, the resumable
state file, the epoch's bookkeeping (``begin_epoch`` ... ``commit``), the optimiser loop and the metrics
written for DVC.

``TrainingRun`` is a base class rather than a set of helper functions because the shared part is a
protocol, not a computation: ``open`` loads the state or starts afresh, ``commit`` saves it atomically,
then reports, and a crash anywhere in between is recovered the same way. The subclasses fill in only
what differs (their models, what else goes into ``state.pt``, how many epochs the run has).

What the Kedro catalog holds of a run are views the run hands out: a :class:`Component` per model (model,
optimiser, LR schedule) and the :class:`RunState`; the phases take and return them, and return their metrics
and media, which ``commit`` files in the epoch's report (``METRIC_PREFIXES``).

The commit protocol: nothing of an epoch is durable until ``commit`` rewrites ``checkpoints/state.pt``
atomically, with the epoch's report inside it. The report is then emitted and ``.last_logged_epoch``
written; a crash between the two is caught by the next ``open``, which emits the report still in the
state file (``_flush_unlogged_report``), so every epoch is reported exactly once.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import time
from abc import ABC, abstractmethod
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable, Iterator, Self

import numpy as np
import torch
from tqdm.auto import tqdm

from diamond_kedro import distributed
from diamond_kedro.models.rew_end_model import classification_metrics as rew_end_classification_metrics
from diamond_kedro.models.unet import probe_network
from diamond_kedro.reporting import EpochReport, emit, flatten
from diamond_kedro.training.optim import clip_and_step, make_optimizer, make_warmup_scheduler
from diamond_kedro.utils.atomic import atomic_write_text
from diamond_kedro.utils.device import resolve_device
from diamond_kedro.utils.precision import resolve_amp, set_probe_network
from diamond_kedro.utils.run_lock import RunLock
from diamond_kedro.utils.state_file import load_state_file, save_state_file
from diamond_kedro.errors import UserError

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    """The global generators (Python, numpy, torch); each run keeps its own generators besides."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass(frozen=True)
class BaseRunPaths:
    """The files every run folder has; Atari runs add their replay stores and agent versions."""

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
    def staging(self) -> Path:
        """The epoch in progress's outputs before its commit (``staging/epoch_<N>/``); gone at the commit, and
        a killed epoch's are discarded when the run is reopened."""
        return self.root / "staging"

    def staged_epoch(self, epoch: int) -> Path:
        return self.staging / f"epoch_{epoch:05d}"

    @property
    def logged_marker(self) -> Path:
        return self.root / ".last_logged_epoch"

    @property
    def over_marker(self) -> Path:
        return self.root / ".run_is_over"


@dataclass(eq=False)
class Component:
    """One trained model as the catalog holds it (``denoiser``, ``rew_end_model``, ``actor_critic``,
    ``upsampler``): the weights with their AdamW state and warm-up schedule, and the run that trains them
    (``run``: its device, precision, gradient accumulation and update counts). A view: the run owns the objects,
    so a node's output ``denoiser_trained`` is the ``denoiser`` it was given, trained in place."""

    name: str
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    run: "TrainingRun | None"  # None: read from a committed run folder, outside a training session
    saved_num_updates: int = 0  # the update count such a read found

    @property
    def num_updates(self) -> int:
        """Optimiser updates made so far (``run_state``'s ``num_batch_train``)."""
        return int(self.run.counters.num_batch_train[self.name]) if self.run is not None else self.saved_num_updates


@dataclass(frozen=True)
class MissingComponent:
    """A component the run does not have (a static-dataset run without an upsampler): it flows through the
    epoch's nodes untrained, so one pipeline serves runs with and without it (Kedro saves no None)."""

    name: str


@dataclass(eq=False)
class RunState:
    """``run_state`` as the catalog holds it: the run's committed counters (epoch, update counts, ...) and,
    through ``run``, its random generators and the epoch in progress. The commit node's handle on the run."""

    run: "TrainingRun"

    @property
    def epoch(self) -> int:
        """The last committed epoch."""
        return int(self.run.counters.epoch)


# ``{name}_metrics`` node outputs and the prefix their metrics take in the epoch's report (spec §6.5 names)
METRIC_PREFIXES = {
    "train_dataset_metrics": "train_dataset",
    "denoiser_metrics": "denoiser/train",
    "rew_end_model_metrics": "rew_end_model/train",
    "actor_critic_metrics": "actor_critic/train",
    "upsampler_metrics": "upsampler/train",
    "evaluate_metrics": "",  # already full names (test_dataset/..., denoiser/test/..., fidelity/...)
}


class RunStateMismatch(UserError, ValueError):
    """A run folder's committed state does not fit the configured run (another kind of run, other actions,
    models of other shapes): nothing is loaded or overwritten; the message names the file and the mismatch."""


class ChangedModelParameters(RunStateMismatch):
    """A run resumed with model-shape parameters other than those it was trained with."""


# Parameters that may differ between the machines or sessions of one run without changing it.
MACHINE_KEYS = frozenset({"run.root", "run.device", "run.num_threads", "run.tune_malloc"})


def changed_parameters(saved: dict[str, Any], now: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """``{flat key: (saved, now)}`` for every parameter that differs (machine-only keys aside)."""
    a, b = flatten(saved), flatten(now)
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if k not in MACHINE_KEYS and a.get(k) != b.get(k)}


def describe_changes(changes: dict[str, tuple[Any, Any]]) -> str:
    return "; ".join(f"{k} ({old!r} -> {new!r})" for k, (old, new) in changes.items())


class RunIsOver(UserError, RuntimeError):
    """Raised by ``begin_epoch`` when every epoch of the run is committed."""


def append_curve(path: Path, key: str, epoch: int, value: float) -> None:
    """Rewrite the curve with this epoch's value (idempotent if an epoch is reported twice)."""
    rows: dict[int, str] = {}
    if path.exists():
        for line in path.read_text().splitlines()[1:]:
            e, v = line.split("\t")
            rows[int(e)] = v
    rows[epoch] = repr(float(value))
    text = "epoch\t" + key.split("/")[-1] + "\n" + "".join(f"{e}\t{rows[e]}\n" for e in sorted(rows))
    atomic_write_text(path, text)


class MetricAccumulator:
    """Averages scalar metrics over steps; sums confusion matrices and derives per-class scores at the end.

    Per-batch precision/recall/F1 are not averaged (an average of ratios is not the ratio of the sums):
    they are recomputed from the accumulated confusion matrices (spec §4.2).

    Metrics may be floats or 0-dim tensors; tensors are summed where they are (on the GPU) and read
    once, in ``result``: a ``float()`` per step would wait for the GPU at every step.
    """

    def __init__(self) -> None:
        self.sums: dict[str, Any] = {}
        self.confusion: dict[str, torch.Tensor] = {}
        self.count = 0

    @classmethod
    def over(cls, metrics: Iterable[dict[str, Any]]) -> "MetricAccumulator":
        """The accumulation of every step's metrics (e.g. a test split's batches)."""
        acc = cls()
        for m in metrics:
            acc.add(m)
        return acc

    def add(self, metrics: dict[str, Any]) -> None:
        self.count += 1
        for k, v in metrics.items():
            if k == "confusion_matrix":
                for name, cm in v.items():
                    self.confusion[name] = self.confusion.get(name, 0) + cm.detach()
            elif "_class_" not in k:
                # summed on the device, read once in ``result``; float64 where the device has it (not MPS)
                if isinstance(v, torch.Tensor):
                    v = v.detach().to(torch.float32 if v.device.type == "mps" else torch.float64)
                else:
                    v = float(v)
                self.sums[k] = self.sums.get(k, 0.0) + v

    def result(self) -> dict[str, float]:
        keys = list(self.sums)
        tensors = [k for k in keys if isinstance(self.sums[k], torch.Tensor)]
        values = {k: self.sums[k] for k in keys}
        if tensors:  # one device->host read for all of them
            device = self.sums[tensors[0]].device
            values.update(zip(tensors, torch.stack([self.sums[k].reshape(()).to(device) for k in tensors]).tolist()))
        out = {k: values[k] / self.count for k in keys} if self.count else {}
        if self.confusion:
            scores = rew_end_classification_metrics(self.confusion["rew"], self.confusion["end"])
            out.update({f"classification_metrics/{k}": v for k, v in scores.items()})
        return out


@torch.no_grad()
def test_losses(
    model: torch.nn.Module, batches: Iterable[Any], loss_fn: Callable[[Any], tuple[Any, dict[str, Any]]] | None = None
) -> tuple[dict[str, float], int]:
    """Mean metrics of ``model`` over test batches (the deterministic traversal of spec §1.8), in eval mode
    (left in train mode after). ``loss_fn(batch)`` defaults to ``model.compute_loss``. Returns the metrics and
    the number of batches. The one test-loss path of every run (Atari's evaluation, the static runs')."""
    loss_fn = loss_fn or model.compute_loss
    model.eval()
    acc = MetricAccumulator.over(loss_fn(b)[1] for b in batches)
    model.train()
    return acc.result(), acc.count


def compile_mode(setting: bool | str) -> str | None:
    """``run.compile`` as ``torch.compile``'s ``mode`` (true: its default)."""
    return None if setting is True else str(setting)


def progress(steps: int, desc: str) -> Iterator[int]:
    """``range(steps)`` with a transient progress bar (none for zero steps, nor when stderr is not a terminal:
    a log file would fill with carriage-return frames)."""
    return iter(tqdm(range(steps), desc=desc, leave=False, disable=True if steps == 0 else None))


class TrainingRun(ABC):
    """State and epoch protocol of one training run; see the module docstring.

    A subclass sets ``kind`` and ``curve_keys``, creates ``self.counters`` (a dataclass with at least
    ``epoch``, ``num_batch_train`` and ``wall_time_s``) and its optimisers (``_make_optimizers``), and
    implements ``total_epochs``, ``_check_state`` and ``_load_components``; it extends ``_state_dict``
    with what else it must persist.
    """

    kind: ClassVar[str]  # EpochReport.kind
    curve_keys: ClassVar[tuple[str, ...]]  # learning curves that ``dvc plots show`` renders
    paths_cls: ClassVar[type[BaseRunPaths]] = BaseRunPaths
    over_error: ClassVar[type[RunIsOver]] = RunIsOver

    # parameters that fix the models' shapes (or the data they model): a resume with other values is refused
    model_keys: ClassVar[tuple[str, ...]] = ("env.game", "env.size")

    counters: Any
    optimizers: dict[str, torch.optim.Optimizer]
    schedulers: dict[str, torch.optim.lr_scheduler.LRScheduler]

    def __init__(self, cfg: Any, key: str, root: Path | None = None) -> None:
        self.cfg = cfg
        self.key = key
        self.paths = self.paths_cls(Path(root) if root is not None else Path(cfg.run.root) / key)
        if cfg.run.num_threads:
            torch.set_num_threads(cfg.run.num_threads)
        # under torchrun each rank joins the process group and takes its own device (``distributed``)
        self.dist = distributed.setup(cfg.run.device)
        # One writer per run folder (``utils.run_lock``), taken before anything reads, repairs or rolls back
        # the folder (the subclasses open their replay stores after this). Under torchrun rank 0 alone is
        # the writer (it alone repairs, rolls back and commits; ``open`` lets it go first): it holds the
        # lock for the whole job, the other ranks only read what it wrote.
        self._lock = RunLock(self.paths.root).acquire() if self.dist.is_main else None
        self.device = self.dist.device if self.dist.enabled else resolve_device(cfg.run.device)
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True  # spec §6.2: TF32 matmuls on
            torch.backends.cudnn.allow_tf32 = True
            torch.backends.cudnn.benchmark = True  # fixed shapes per component: autotuned conv algorithms pay
        # run.amp (both families): bf16 autocast of the training forward passes; "auto" where this machine
        # computes bf16 natively and it pays (probed once, cached; ``utils.precision``)
        # (the probe times the U-Net, handed down here because utils/ does not import models/)
        set_probe_network(probe_network)
        self.amp = resolve_amp(cfg.run.amp, self.device)
        seed_everything(cfg.run.seed)
        self.pending: EpochReport | None = None  # the epoch in progress
        self.changed_params = ""  # set by a resume with other (non-model) parameters; tagged on the next epoch
        self._epoch_start = 0.0
        self._components: dict[str, Component] = {}

    @abstractmethod
    def model(self, name: str) -> torch.nn.Module:
        """The model called ``name`` (``denoiser``, ``rew_end_model``, ...)."""

    def component(self, name: str) -> Component:
        """The catalog's view of model ``name``: the model, its optimiser and LR schedule, this run."""
        if name not in self._components:
            self._components[name] = Component(name, self.model(name), self.optimizers[name], self.schedulers[name], self)
        return self._components[name]

    def own(self, component: Component | None, name: str | None = None) -> Component:
        """``component``, checked to be this run's (a node given another run's model would train the wrong one);
        None with a ``name``: the run's own component of that name."""
        if component is None and name is not None:
            return self.component(name)
        if not isinstance(component, Component) or component.run is not self:
            raise ValueError(f"{getattr(component, 'name', component)!r} is not a component of run {self.key}")
        return component

    @property
    def state(self) -> RunState:
        return RunState(self)

    def _make_optimizers(self, models: dict[str, torch.nn.Module]) -> None:
        """AdamW + linear warm-up per model, from the model's ``<name>.training`` section (spec §6.2)."""
        self.optimizers, self.schedulers = {}, {}
        for name, model in models.items():
            t = getattr(self.cfg, name).training
            self.optimizers[name] = make_optimizer(model, lr=t.lr, weight_decay=t.weight_decay, eps=t.eps)
            self.schedulers[name] = make_warmup_scheduler(self.optimizers[name], t.warmup_steps)

    def _compile(self, *modules: torch.nn.Module) -> None:
        """``run.compile`` (both families): ``torch.compile`` the modules in place (``nn.Module.compile``), so
        state-dict keys and checkpoints stay those of the plain modules. A ``Denoiser`` is called through its
        ``inner_model`` (it has no ``forward``): pass that."""
        if self.cfg.run.compile:
            for module in modules:
                module.compile(mode=compile_mode(self.cfg.run.compile))

    def _autocast(self) -> Any:
        """The precision of training (and the static runs' test) forward passes: bf16 autocast iff ``self.amp``."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16) if self.amp else nullcontext()

    # -- opening and resuming --------------------------------------------------------------------
    @classmethod
    def open(cls, cfg: Any, root: Path | None = None) -> Self:
        # under torchrun rank 0 opens first (it alone repairs and rolls back files), then the others read
        with distributed.setup(cfg.run.device).main_first():
            run = cls(cfg, root)
            try:
                if run.paths.state.exists():
                    run._load_state()
                elif run.dist.is_main:
                    run._start_fresh()
                if run.dist.is_main:  # a killed epoch's staged outputs are not part of the run
                    shutil.rmtree(run.paths.staging, ignore_errors=True)
                run._flush_unlogged_report()
            except BaseException:  # a state that does not fit, a bad file...: give the folder back at once
                run.close()
                raise
        run.dist.decorrelate_rng()
        return run

    @classmethod
    def open_epoch(cls, cfg: Any, root: Path | None = None) -> Self:
        """``open`` and ``begin_epoch``, as every pipeline's first node does; a run that cannot begin one (it
        is over) gives its folder back before the error leaves."""
        run = cls.open(cfg, root)
        try:
            run.begin_epoch()
        except BaseException:
            run.close()
            raise
        return run

    def _start_fresh(self) -> None:
        """No committed state: undo whatever a first epoch killed before its commit left behind."""

    def _rng_state(self) -> dict[str, Any]:
        state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
        state.update(self._own_rng_state())
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def _set_rng_state(self, state: dict[str, Any]) -> None:
        random.setstate(state["python"])
        np.random.set_state(state["numpy"])
        torch.set_rng_state(state["torch"])
        self._set_own_rng_state(state)
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])

    def _own_rng_state(self) -> dict[str, Any]:
        """The run's own generators (beside the global ones), saved under ``state["rng"]``."""
        return {}

    def _set_own_rng_state(self, state: dict[str, Any]) -> None:
        pass

    def _state_dict(self) -> dict[str, Any]:
        """What every ``state.pt`` holds; subclasses add their format tag and models."""
        return {
            "run_key": self.key,
            "config": self.cfg.model_dump(),
            "counters": asdict(self.counters),
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()},
            "rng": self._rng_state(),
            # data only (``utils.state_file``): the report as a dict, rebuilt by ``_load_state``
            "report": None if self.pending is None else asdict(self.pending),
        }

    @abstractmethod
    def _check_state(self, state: Any, path: Path) -> None:
        """Raise ValueError unless ``state`` is this kind of run's state (format, shapes)."""

    @abstractmethod
    def _load_components(self, state: dict[str, Any], path: Path) -> None:
        """Load the models (and anything else the subclass saved) from ``state``."""

    def _load_state(self) -> None:
        path = self.paths.state
        # data only, and always to the CPU: the RNG states must be CPU byte tensors (``torch.set_rng_state``
        # and ``torch.cuda.set_rng_state_all`` refuse CUDA ones); models and optimisers copy their tensors
        # onto their own device in ``load_state_dict``. A pickled (old or crafted) file is refused unread.
        state = load_state_file(path)
        self._check_state(state, path)
        self._check_parameters(state.get("config") or {}, path)
        self._load_components(state, path)
        for k in self.optimizers:
            self.optimizers[k].load_state_dict(state["optimizers"][k])
            self.schedulers[k].load_state_dict(state["schedulers"][k])
        self.counters = type(self.counters)(**state["counters"])
        self._set_rng_state(state["rng"])
        report = state.get("report")
        self.pending = None if report is None else EpochReport(**report)
        log.info("Resumed %s at epoch %d%s", self.key, self.counters.epoch, self._progress_note())

    def _is_model_key(self, key: str) -> bool:
        return ".model." in f".{key}." or key in self.model_keys

    def _check_parameters(self, saved: dict[str, Any], path: Path) -> None:
        """Resuming with other parameters: model-shape ones refuse (the weights would not fit, or would
        model something else); any other change continues, named in a warning and in a tag of the next
        epoch's report (the run's MLflow parameters keep their first values)."""
        changes = changed_parameters(saved, self.cfg.model_dump())
        model = {k: v for k, v in changes.items() if self._is_model_key(k)}
        if model:
            raise ChangedModelParameters(
                f"{path} does not match the configured models: model parameters changed since the run started: "
                f"{describe_changes(model)}; restore them, or start a new run (another run.name)"
            )
        if changes:
            self.changed_params = describe_changes(changes)
            log.warning("Resuming %s with changed parameters: %s", self.key, self.changed_params)

    def _flush_unlogged_report(self) -> None:
        """A crash between ``commit``'s save and its emit leaves one report unlogged: send it now."""
        if self.pending is None or not self.dist.is_main:
            self.pending = None
            return
        logged = int(self.paths.logged_marker.read_text()) if self.paths.logged_marker.exists() else 0
        if self.pending.epoch > logged:
            emit(self.pending)
            atomic_write_text(self.paths.logged_marker, str(self.pending.epoch))
        self.pending = None

    def _progress_note(self) -> str:
        """Appended to the resume and commit log lines (e.g. the env steps)."""
        return ""

    # -- epoch bookkeeping -----------------------------------------------------------------------
    @property
    def epoch(self) -> int:
        """The epoch in progress (after ``begin_epoch``), else the last committed one."""
        return self.pending.epoch if self.pending is not None else self.counters.epoch

    @property
    @abstractmethod
    def total_epochs(self) -> int | None:
        """Number of epochs of the whole run; None while not yet known."""

    @property
    def is_over(self) -> bool:
        total = self.total_epochs
        return total is not None and self.counters.epoch >= total

    @property
    def is_last_epoch(self) -> bool:
        total = self.total_epochs
        return total is not None and self.epoch == total

    def should_evaluate(self) -> bool:
        return self.epoch % self.cfg.evaluate.every == 0 or self.is_last_epoch

    def begin_epoch(self) -> int:
        if self.is_over:
            raise self.over_error(f"run {self.key} is over: all {self.counters.epoch} epochs are committed")
        self.pending = EpochReport(
            epoch=self.counters.epoch + 1, run_key=self.key, kind=self.kind, params=flatten(self.cfg.model_dump())
        )
        if self.changed_params:  # once, on the first epoch after the resume that changed them
            self.pending.tags["resumed_with_changed_params"] = self.changed_params[:4000]
            self.changed_params = ""
        self.pending.tags["precision"] = "bf16 autocast" if self.amp else "fp32"  # what run.amp resolved to here
        self._epoch_start = time.perf_counter()
        log.info("Epoch %d of %s", self.pending.epoch, self.key)
        return self.pending.epoch

    def _report(self) -> EpochReport:
        if self.pending is None:
            raise RuntimeError("no epoch in progress: call begin_epoch() first")
        return self.pending

    @contextmanager
    def _timed(self, component: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        seconds = time.perf_counter() - start
        self._report().metrics[f"{component}/wall_time_s"] = seconds
        log.info("%s took %.1f s", component, seconds)

    # -- training ----------------------------------------------------------------------------------
    def _train_phase(self, name: str, train: Callable[[], dict[str, float]]) -> dict[str, float]:
        """Run ``train`` timed; its metrics are the phase's output (``<name>_metrics``: the commit files them
        under ``<name>/train``)."""
        with self._timed(name):
            return train()

    def _optimise(self, component: Component, steps: int, update: Callable[[MetricAccumulator], float]) -> dict[str, float]:
        """``steps`` optimiser updates of ``component``. ``update(acc)`` makes one, adding the metrics of
        its batches to ``acc``, and returns the gradient norm before clipping (a tensor or a float; read once,
        at the end). Returns the mean metrics,
        the update count, and the last update's gradient norm and lr (the current lr if ``steps`` is 0)."""
        name, opt = component.name, component.optimizer
        acc = MetricAccumulator()
        grad_norm, lr = 0.0, opt.param_groups[0]["lr"]
        for _ in progress(steps, f"{name} (epoch {self.epoch})"):
            lr = opt.param_groups[0]["lr"]  # the lr this update uses (the warm-up schedule steps it after)
            grad_norm = update(acc)
            self.counters.num_batch_train[name] += 1
        out = acc.result()
        out[f"num_batch_train_{name}"] = self.counters.num_batch_train[name]
        out["grad_norm_before_clip"] = float(grad_norm)
        out["lr"] = lr
        return out

    def _num_steps(self, name: str) -> int:
        """Optimiser updates of model ``name`` this epoch."""
        return getattr(self.cfg, name).training.steps_per_epoch

    def _train_steps(
        self,
        component: Component,
        loss_fn: Callable[[], tuple[torch.Tensor, dict[str, Any]]],
        grad_acc_steps: int = 1,
        accumulating: Callable[..., Any] | None = None,
    ) -> dict[str, float]:
        """This epoch's updates of ``component`` (spec §6.2, §7.4), for every run. One update: ``grad_acc_steps``
        micro-batches, each ``loss_fn()`` under the run's precision (``self.amp``) and a backward of its loss
        divided by ``grad_acc_steps`` (so the gradients add up to that of the micro-batches' mean loss: one
        step on their concatenation, for a per-batch mean loss), then the global norm clipped at
        ``<name>.training.max_grad_norm``, an AdamW step and a warm-up-schedule step. ``accumulating(last=...)``
        (``DataParallelLoss.accumulating``) wraps each micro-batch: under DDP only the last one all-reduces."""
        name, model = component.name, component.model
        t = getattr(self.cfg, name).training
        opt, sched = component.optimizer, component.scheduler

        def update(acc: MetricAccumulator) -> torch.Tensor:
            opt.zero_grad(set_to_none=True)
            for i in range(grad_acc_steps):
                with accumulating(last=i == grad_acc_steps - 1) if accumulating is not None else nullcontext():
                    with self._autocast():
                        loss, metrics = loss_fn()
                    (loss / grad_acc_steps if grad_acc_steps > 1 else loss).backward()
                acc.add(metrics)
            return clip_and_step(model, opt, sched, t.max_grad_norm)

        return self._optimise(component, self._num_steps(name), update)

    # -- commit ----------------------------------------------------------------------------------
    def commit(self, metrics: dict[str, dict[str, float]] | None = None, media: Iterable[Path] = ()) -> EpochReport:
        """Make the epoch durable (atomic ``state.pt``), then report it. Returns the epoch's report.

        ``metrics``: the phases' outputs by name (``denoiser_metrics``, ...: :data:`METRIC_PREFIXES`), filed in the
        report under their prefix; ``media``: the epoch's pictures and videos (MLflow artifacts)."""
        report = self._report()
        for name, values in (metrics or {}).items():
            if name not in METRIC_PREFIXES:
                raise ValueError(f"unknown epoch output {name!r}: one of {', '.join(METRIC_PREFIXES)}")
            report.add(METRIC_PREFIXES[name], values or {})
        report.artifacts.extend((self.media_folder, Path(p)) for p in media)
        self._before_commit(report)
        elapsed = time.perf_counter() - self._epoch_start
        self.counters.wall_time_s += elapsed
        report.metrics["duration"] = elapsed / 3600.0  # spec §6.5: hours per epoch
        report.metrics["epoch"] = float(report.epoch)
        self.counters.epoch = report.epoch
        report.run_is_over = self.is_over  # on every rank (the counters are the same on all of them)
        if self.dist.is_main:  # under torchrun the other ranks hold the same models and write nothing
            self.paths.checkpoints.mkdir(parents=True, exist_ok=True)
            save_state_file(self._state_dict(), self.paths.state)
            self._after_save(report)
            shutil.rmtree(self.paths.staging, ignore_errors=True)  # committed: the staged copies are spent
            self._write_dvc_metrics(report)
            if self.is_over:
                self.paths.over_marker.touch()
            emit(report)
            atomic_write_text(self.paths.logged_marker, str(report.epoch))
        self.pending = None
        log.info("Epoch %d of %s committed in %.1f s%s", report.epoch, self.key, elapsed, self._progress_note())
        return report

    def close(self) -> None:
        """Give the run folder back (its lock); the object is not used after this."""
        if self._lock is not None:
            self._lock.release()

    media_folder: ClassVar[str] = "media"  # the MLflow artifact folder of the epoch's media

    def _before_commit(self, report: EpochReport) -> None:
        """Metrics the run adds to every epoch's report from its counters (e.g. the env steps)."""

    def _after_save(self, report: EpochReport) -> None:
        """Files that follow ``state.pt`` at each commit (e.g. agent versions)."""

    def _metrics_summary(self) -> dict[str, Any]:
        """Entries of ``metrics.json`` beside the epoch and the report's metrics."""
        return {}

    def _write_dvc_metrics(self, report: EpochReport) -> None:
        metrics = report.finite_metrics()
        summary = {"epoch": report.epoch, **self._metrics_summary(), **metrics}
        atomic_write_text(self.paths.metrics, json.dumps(summary, indent=2, sort_keys=True))
        self.paths.curves.mkdir(parents=True, exist_ok=True)
        for key in self.curve_keys:
            if key in metrics:
                append_curve(self.paths.curves / f"{key.replace('/', '__')}.tsv", key, report.epoch, metrics[key])
