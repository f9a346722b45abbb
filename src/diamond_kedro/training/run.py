"""One DIAMOND training run on an Atari game (spec §6): what persists between epochs, and the epoch itself.

A run lives in ``<run.root>/<Game>_seed<seed>_<name>/``::

    replay/train/, replay/test/     Arrow replay stores (DVC-tracked)
    checkpoints/state.pt            everything needed to resume: models, optimisers, LR schedules,
                                    counters, the collector (emulator states, LSTM, episode ids), RNGs
    checkpoints/agent_versions/     agent weights every ``save_agent_every`` epochs (+ the latest)
    metrics.json, curves/*.tsv      the latest epoch's metrics and learning curves (``dvc metrics/plots``)

An epoch is: ``begin_epoch`` -> ``collect`` -> ``train_denoiser`` -> ``train_rew_end_model`` ->
``train_actor_critic`` -> ``evaluate`` -> ``commit``. Nothing of an epoch is durable until ``commit``
rewrites ``state.pt`` atomically; replay chunks written by an uncommitted epoch carry its number and are
rolled back when the run is reopened, and the collector resumes from the committed emulator states, so a
run killed at any point resumes with no lost or duplicated transitions.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from tqdm.auto import tqdm

from diamond_kedro.config import DiamondConfig
from diamond_kedro.envs.atari import make_atari_env, resolve_game
from diamond_kedro.envs.collector import Collector
from diamond_kedro.envs.world_model_env import WorldModelEnv, WorldModelEnvConfig
from diamond_kedro.models.actor_critic import ActorCriticConfig
from diamond_kedro.models.agent import Agent, AgentConfig, save_checkpoint
from diamond_kedro.models.denoiser import DenoiserConfig, SigmaDistributionConfig
from diamond_kedro.models.diffusion_sampler import DiffusionSamplerConfig
from diamond_kedro.models.rew_end_model import RewEndModelConfig
from diamond_kedro.models.rew_end_model import classification_metrics as rew_end_classification_metrics
from diamond_kedro.models.unet import InnerModelConfig
from diamond_kedro.replay.batch import Batch
from diamond_kedro.replay.sampler import SegmentSampler
from diamond_kedro.replay.store import ReplayStore
from diamond_kedro.reporting import EpochReport, emit, flatten
from diamond_kedro.training.imagination import RolloutLoop, actor_critic_loss
from diamond_kedro.training.optim import make_optimizer, make_warmup_scheduler, optimizer_step
from diamond_kedro.utils.allocator import tune_glibc_malloc
from diamond_kedro.utils.atomic import atomic_torch_save, atomic_write_text

log = logging.getLogger(__name__)

COMPONENTS = ("denoiser", "rew_end_model", "actor_critic")


def game_name(cfg: DiamondConfig) -> str:
    """``Breakout`` for ``Breakout`` and ``BreakoutNoFrameskip-v4`` alike."""
    return resolve_game(cfg.env.game).removesuffix("NoFrameskip-v4")


def run_key(cfg: DiamondConfig) -> str:
    return f"{game_name(cfg)}_seed{cfg.run.seed}_{cfg.run.name}"


def resolve_device(spec: str) -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(spec)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"run.device={spec!r} but CUDA is not available on this machine")
    return device


@dataclass(frozen=True)
class RunPaths:
    root: Path

    @property
    def replay_train(self) -> Path:
        return self.root / "replay" / "train"

    @property
    def replay_test(self) -> Path:
        return self.root / "replay" / "test"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def state(self) -> Path:
        return self.checkpoints / "state.pt"

    @property
    def agent_versions(self) -> Path:
        return self.checkpoints / "agent_versions"

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
class Counters:
    """Progress of the run; ``epoch`` is the last *committed* epoch."""

    epoch: int = 0
    env_steps: int = 0
    num_epochs_collect: int | None = None  # fixed once the initial collection is done (spec §6.1)
    num_batch_train: dict[str, int] = field(default_factory=lambda: {c: 0 for c in COMPONENTS})
    num_test_episodes: int = 0
    wall_time_s: float = 0.0
    final_metrics: dict[str, float] = field(default_factory=dict)  # final evaluation (spec §6.1 step 5)


# --------------------------------------------------------------------------------------------------
# building the agent from the validated parameters
# --------------------------------------------------------------------------------------------------


def build_agent(cfg: DiamondConfig, num_actions: int) -> Agent:
    """The three models from the validated parameters (``conf/*/parameters_train_*.yml``)."""
    d, r, a = cfg.denoiser.model, cfg.rew_end_model.model, cfg.actor_critic.model
    denoiser = DenoiserConfig(
        inner_model=InnerModelConfig(
            num_steps_conditioning=d.num_steps_conditioning,
            cond_channels=d.cond_channels,
            depths=list(d.depths),
            channels=list(d.channels),
            attn_depths=list(d.attn_depths),
        ),
        sigma_data=d.sigma_data,
        sigma_offset_noise=d.sigma_offset_noise,
        num_autoregressive_steps=d.num_autoregressive_steps,
        sigma_distribution=SigmaDistributionConfig(**cfg.denoiser.sigma_distribution.model_dump()),
    )
    rew_end_model = RewEndModelConfig(
        lstm_dim=r.lstm_dim,
        img_size=cfg.env.size,
        cond_channels=r.cond_channels,
        depths=list(r.depths),
        channels=list(r.channels),
        attn_depths=list(r.attn_depths),
    )
    actor_critic = ActorCriticConfig(
        num_actions=num_actions, channels=tuple(a.channels), down=tuple(a.down), lstm_dim=a.lstm_dim, img_size=cfg.env.size
    )
    return Agent(AgentConfig(num_actions, denoiser=denoiser, rew_end_model=rew_end_model, actor_critic=actor_critic))


def sampler_config(cfg: DiamondConfig) -> DiffusionSamplerConfig:
    return DiffusionSamplerConfig(**cfg.denoiser.sampler.model_dump())


# --------------------------------------------------------------------------------------------------
# the run
# --------------------------------------------------------------------------------------------------


class RunIsOver(RuntimeError):
    """Raised by ``begin_epoch`` when every epoch of the run is committed."""


class AtariRun:
    """State and phases of one training run. Use ``AtariRun.open(cfg)``; see the module docstring."""

    def __init__(self, cfg: DiamondConfig, root: Path | None = None) -> None:
        self.cfg = cfg
        self.paths = RunPaths(Path(root) if root is not None else Path(cfg.run.root) / run_key(cfg))
        if cfg.run.tune_malloc:
            tune_glibc_malloc()
        if cfg.run.num_threads:
            torch.set_num_threads(cfg.run.num_threads)
        self.device = resolve_device(cfg.run.device)
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True  # spec §6.2: TF32 matmuls on
            torch.backends.cudnn.allow_tf32 = True
        self._seed_everything(cfg.run.seed)

        self.train_env = make_atari_env(
            cfg.env.game,
            num_envs=cfg.env.num_envs,
            done_on_life_loss=True,
            seed=cfg.run.seed,
            device=self.device,
            noop_max=cfg.env.noop_max,
            frame_skip=cfg.env.frame_skip,
            screen_size=cfg.env.size,
            max_num_frames_per_episode=cfg.env.max_num_frames_per_episode,
        )
        self.num_actions = self.train_env.num_actions
        self.agent = build_agent(cfg, self.num_actions).to(self.device)
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.schedulers: dict[str, torch.optim.lr_scheduler.LRScheduler] = {}
        for name in COMPONENTS:
            t = getattr(cfg, name).training
            model = getattr(self.agent, name)
            self.optimizers[name] = make_optimizer(model, lr=t.lr, weight_decay=t.weight_decay, eps=t.eps)
            self.schedulers[name] = make_warmup_scheduler(self.optimizers[name], t.warmup_steps)

        # repair=True: a run killed between a chunk's rename and the manifest's rewrite is re-manifested from
        # the files; whatever the uncommitted epoch wrote is then rolled back in ``open``.
        self.replay_train = ReplayStore(self.paths.replay_train, repair=True)
        self.replay_test = ReplayStore(self.paths.replay_test, repair=True)
        self.collector = Collector(
            self.train_env,
            store=self.replay_train,
            policy=self.agent.actor_critic,
            epsilon=cfg.collect.epsilon,
            train=True,
            seed=cfg.run.seed,
        )
        self.counters = Counters()
        self.pending: EpochReport | None = None  # the epoch in progress
        self._wm_env: WorldModelEnv | None = None
        self._rollout: RolloutLoop | None = None
        self._samplers: dict[str, SegmentSampler] = {}
        self._epoch_start = 0.0

    # -- opening and resuming --------------------------------------------------------------------
    @classmethod
    def open(cls, cfg: DiamondConfig, root: Path | None = None) -> "AtariRun":
        run = cls(cfg, root)
        if run.paths.state.exists():
            run._load_state()
        else:
            # a first epoch killed before its commit: throw away its partial replay
            run.replay_train.rollback(0)
            run.replay_test.clear()
        run._flush_unlogged_report()
        return run

    def _seed_everything(self, seed: int) -> None:
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        self.rng = np.random.default_rng(seed)

    def _rng_state(self) -> dict[str, Any]:
        state = {
            "python": random.getstate(),
            "numpy": np.random.get_state(),
            "numpy_generator": self.rng.bit_generator.state,
            "torch": torch.get_rng_state(),
        }
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def _set_rng_state(self, state: dict[str, Any]) -> None:
        random.setstate(state["python"])
        np.random.set_state(state["numpy"])
        self.rng.bit_generator.state = state["numpy_generator"]
        torch.set_rng_state(state["torch"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])

    def _state_dict(self) -> dict[str, Any]:
        return {
            "format": 1,
            "run_key": run_key(self.cfg),
            "config": self.cfg.model_dump(),
            "num_actions": self.num_actions,
            "counters": asdict(self.counters),
            "agent": self.agent.state_dict(),
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()},
            "collector": self.collector.state_dict(),
            "rng": self._rng_state(),
            "report": self.pending,
        }

    def _load_state(self) -> None:
        path = self.paths.state
        try:
            state = torch.load(path, map_location=self.device, weights_only=False)
        except Exception as exc:  # a torn file cannot happen with atomic writes; a foreign one can
            raise ValueError(f"cannot read run state {path}: {exc}") from exc
        if not isinstance(state, dict) or state.get("format") != 1:
            raise ValueError(f"{path} is not a diamond-kedro run state (format 1)")
        if state["num_actions"] != self.num_actions:
            raise ValueError(
                f"{path} was trained with {state['num_actions']} actions, {self.cfg.env.game} has {self.num_actions}"
            )
        try:
            self.agent.load_state_dict(state["agent"], strict=True)
        except RuntimeError as exc:
            raise ValueError(
                f"{path} does not match the configured models (did the model parameters change since the run "
                f"started?): {exc}"
            ) from exc
        for k in COMPONENTS:
            self.optimizers[k].load_state_dict(state["optimizers"][k])
            self.schedulers[k].load_state_dict(state["schedulers"][k])
        self.counters = Counters(**state["counters"])
        self.collector.load_state_dict(state["collector"])
        self._set_rng_state(state["rng"])
        self.pending = state.get("report")
        # chunks written by an epoch that never committed are not part of the run
        self.replay_train.rollback(self.counters.epoch)
        log.info("Resumed %s at epoch %d (%d env steps)", run_key(self.cfg), self.counters.epoch, self.counters.env_steps)

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
        """The epoch in progress (after ``begin_epoch``), else the last committed one."""
        return self.pending.epoch if self.pending is not None else self.counters.epoch

    @property
    def final_metrics(self) -> dict[str, float]:
        return self.counters.final_metrics

    @property
    def is_over(self) -> bool:
        total = self.counters.num_epochs_collect
        return total is not None and self.counters.epoch >= total + self.cfg.run.num_final_epochs

    @property
    def is_last_epoch(self) -> bool:
        total = self.counters.num_epochs_collect
        return total is not None and self.epoch == total + self.cfg.run.num_final_epochs

    def begin_epoch(self) -> int:
        if self.is_over:
            raise RunIsOver(f"run {run_key(self.cfg)} is over: all {self.counters.epoch} epochs are committed")
        self.pending = EpochReport(
            epoch=self.counters.epoch + 1, run_key=run_key(self.cfg), kind="atari", params=flatten(self.cfg.model_dump())
        )
        self._epoch_start = time.perf_counter()
        log.info("Epoch %d of %s", self.pending.epoch, run_key(self.cfg))
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

    # -- collection (spec §1.6, §6.1) -------------------------------------------------------------
    def collect(self) -> dict[str, float]:
        report, c = self._report(), self.cfg.collect
        with self._timed("collect"):
            stats: dict[str, float] = {}
            if self.counters.num_epochs_collect is None:
                first = c.first_epoch
                self.collector.collect_initial(
                    min_steps=first.min_steps,
                    max_steps=first.max_steps,
                    threshold_rew=first.threshold_rew,
                    increment=c.steps_per_epoch,
                    epoch=self.epoch,
                )
                n0 = self.replay_train.num_steps
                remaining = self.cfg.run.total_env_steps - n0
                if remaining < 0 or remaining % c.steps_per_epoch:
                    raise ValueError(
                        f"run.total_env_steps ({self.cfg.run.total_env_steps}) minus the initial collection ({n0}) "
                        f"must be a non-negative multiple of collect.steps_per_epoch ({c.steps_per_epoch})"
                    )
                self.counters.num_epochs_collect = remaining // c.steps_per_epoch
                log.info("Initial collection: %d steps; %d collecting epochs", n0, self.counters.num_epochs_collect)
            if self.epoch <= self.counters.num_epochs_collect:
                result = self.collector.collect(num_steps=c.steps_per_epoch, epoch=self.epoch)
                if result.episode_returns:
                    stats["return_mean"] = float(np.mean(result.episode_returns))
                    stats["length_mean"] = float(np.mean(result.episode_lengths))
                    stats["num_finished_episodes"] = len(result.episode_returns)
            self.counters.env_steps = self.replay_train.num_steps
            stats["num_steps"] = self.replay_train.num_steps
            stats["num_episodes"] = self.replay_train.num_episodes
            # spec §6.5 names, except that MLflow refuses "+" in a metric name: rew_+1 is logged as rew_1
            for sign, name in ((-1, "rew_-1"), (0, "rew__0"), (1, "rew_1")):
                stats[f"counts/{name}"] = self.replay_train.counter_rew.get(sign, 0)
            for value in (0, 1):
                stats[f"counts/end_{value}"] = self.replay_train.counter_end.get(value, 0)
        report.add("train_dataset", stats)
        report.metrics["env_steps"] = float(self.counters.env_steps)
        return stats

    # -- world-model training (spec §2.3, §4.2) --------------------------------------------------
    def _sampler(self, name: str) -> SegmentSampler:
        if name not in self._samplers:
            if name == "denoiser":
                d = self.cfg.denoiser.model
                seq_len, padding = d.num_steps_conditioning + 1 + d.num_autoregressive_steps, "left"
            elif name == "rew_end_model":
                seq_len, padding = self.cfg.rew_end_model.training.seq_length, "both"
            else:  # initial contexts of the world-model env
                seq_len, padding = self.cfg.denoiser.model.num_steps_conditioning, "left"
            t = getattr(self.cfg, name).training
            self._samplers[name] = SegmentSampler(
                self.replay_train,
                batch_size=t.batch_size,
                seq_len=seq_len,
                padding=padding,
                weights=t.sample_weights,
                seed=int(self.rng.integers(2**31)),
                device=self.device,
            )
        return self._samplers[name]

    def _num_steps(self, name: str) -> int:
        """The long first training (spec §6.1: 10 000 / 10 000 / 5 000 steps) is the component's first one,
        whichever epoch that is (a standalone ``collect`` epoch may come before any training)."""
        t = getattr(self.cfg, name).training
        return t.steps_first_epoch if self.counters.num_batch_train[name] == 0 else t.steps_per_epoch

    def _train_world_model_component(self, name: str) -> dict[str, float]:
        model = getattr(self.agent, name)
        t = getattr(self.cfg, name).training
        sampler = self._sampler(name)
        steps = self._num_steps(name)
        acc = MetricAccumulator()
        grad_norm = 0.0
        model.train()
        for _ in tqdm(range(steps), desc=f"{name} (epoch {self.epoch})", leave=False, disable=steps == 0):
            batch = sampler.sample()
            loss, metrics = model.compute_loss(batch)
            lr = self.optimizers[name].param_groups[0]["lr"]  # the lr this update uses (warm-up steps it after)
            grad_norm = optimizer_step(model, self.optimizers[name], self.schedulers[name], loss, t.max_grad_norm)
            acc.add(metrics)
            self.counters.num_batch_train[name] += 1
        out = acc.result()
        out[f"num_batch_train_{name}"] = self.counters.num_batch_train[name]
        out["grad_norm_before_clip"] = grad_norm
        out["lr"] = lr if steps else self.optimizers[name].param_groups[0]["lr"]
        return out

    def train_denoiser(self) -> dict[str, float]:
        with self._timed("denoiser"):
            metrics = self._train_world_model_component("denoiser")
        self._report().add("denoiser/train", metrics)
        return metrics

    def train_rew_end_model(self) -> dict[str, float]:
        with self._timed("rew_end_model"):
            metrics = self._train_world_model_component("rew_end_model")
        self._report().add("rew_end_model/train", metrics)
        return metrics

    # -- RL in imagination (spec §5) -------------------------------------------------------------
    def world_model_env(self) -> WorldModelEnv:
        if self._wm_env is None:
            t = self.cfg.actor_critic.training
            sampler = self._sampler("actor_critic")

            def sample_contexts(n: int) -> Batch:
                if n != sampler.batch_size:
                    raise ValueError(f"the world-model env asked for {n} contexts, the sampler draws {sampler.batch_size}")
                return sampler.sample()

            self._wm_env = WorldModelEnv(
                self.agent.denoiser,
                self.agent.rew_end_model,
                sample_contexts,
                WorldModelEnvConfig(
                    horizon=t.horizon,
                    num_batches_to_preload=t.num_batches_to_preload,
                    diffusion_sampler=sampler_config(self.cfg),
                ),
                num_envs=t.batch_size,
            )
        return self._wm_env

    def train_actor_critic(self) -> dict[str, float]:
        t = self.cfg.actor_critic.training
        steps = self._num_steps("actor_critic")
        ac = self.agent.actor_critic
        with self._timed("actor_critic"):
            if self._rollout is None:
                self._rollout = RolloutLoop(self.world_model_env(), ac, epsilon=0.0)
            acc = MetricAccumulator()
            grad_norm = 0.0
            self.agent.denoiser.eval()
            self.agent.rew_end_model.eval()
            ac.train()
            for _ in tqdm(range(steps), desc=f"actor_critic (epoch {self.epoch})", leave=False, disable=steps == 0):
                rollout = self._rollout.run(t.backup_every)
                loss, metrics = actor_critic_loss(
                    rollout,
                    gamma=t.gamma,
                    lambda_=t.lambda_,
                    weight_value_loss=t.weight_value_loss,
                    weight_entropy_loss=t.weight_entropy_loss,
                )
                lr = self.optimizers["actor_critic"].param_groups[0]["lr"]
                grad_norm = optimizer_step(ac, self.optimizers["actor_critic"], self.schedulers["actor_critic"], loss, t.max_grad_norm)
                acc.add(metrics)
                self.counters.num_batch_train["actor_critic"] += 1
            metrics = acc.result()
            metrics["num_batch_train_actor_critic"] = self.counters.num_batch_train["actor_critic"]
            metrics["grad_norm_before_clip"] = grad_norm
            metrics["lr"] = lr if steps else self.optimizers["actor_critic"].param_groups[0]["lr"]
        self._report().add("actor_critic/train", metrics)
        return metrics

    # -- evaluation (spec §6.3) ------------------------------------------------------------------
    def should_evaluate(self) -> bool:
        return self.epoch % self.cfg.evaluate.every == 0 or self.is_last_epoch

    def evaluate(self) -> dict[str, float]:
        from diamond_kedro.training.evaluation import evaluate_run

        if not self.should_evaluate():
            return {}
        with self._timed("evaluate"):
            metrics = evaluate_run(self)
        return metrics

    # -- commit ----------------------------------------------------------------------------------
    def commit(self) -> EpochReport:
        """Make the epoch durable (atomic ``state.pt``), then report it. Returns the epoch's report."""
        report = self._report()
        elapsed = time.perf_counter() - self._epoch_start
        self.counters.wall_time_s += elapsed
        report.metrics["duration"] = elapsed / 3600.0  # spec §6.5: hours per epoch
        report.metrics["epoch"] = float(report.epoch)
        self.counters.epoch = report.epoch
        self.paths.checkpoints.mkdir(parents=True, exist_ok=True)
        atomic_torch_save(self._state_dict(), self.paths.state)
        self._save_agent_version(report)
        self._write_dvc_metrics(report)
        if self.is_over:
            self.paths.over_marker.touch()
        emit(report)
        atomic_write_text(self.paths.logged_marker, str(report.epoch))
        self.pending = None
        log.info("Epoch %d committed in %.1f s (%d env steps)", report.epoch, elapsed, self.counters.env_steps)
        return report

    def _save_agent_version(self, report: EpochReport) -> None:
        """Latest agent every epoch; every ``save_agent_every``-th kept, the newest ``num_agents_to_keep`` of them."""
        folder = self.paths.agent_versions
        folder.mkdir(parents=True, exist_ok=True)
        epoch, every = report.epoch, self.cfg.run.save_agent_every
        path = folder / f"agent_epoch_{epoch:05d}.pt"
        save_checkpoint(path, self.agent, self.agent.cfg)
        previous = folder / f"agent_epoch_{epoch - 1:05d}.pt"
        if epoch > 1 and (epoch - 1) % every != 0 and previous.exists():
            previous.unlink()
        kept = sorted(p for p in folder.glob("agent_epoch_*.pt") if int(p.stem.split("_")[-1]) % every == 0)
        for old in kept[: -self.cfg.run.num_agents_to_keep]:
            if old != path:
                old.unlink()
        if epoch % every == 0 or self.is_over:
            report.artifacts.append(("checkpoints", path))

    def _write_dvc_metrics(self, report: EpochReport) -> None:
        metrics = {k: v for k, v in report.finite_metrics().items()}
        summary = {"epoch": report.epoch, "env_steps": self.counters.env_steps, **metrics}
        atomic_write_text(self.paths.metrics, json.dumps(summary, indent=2, sort_keys=True))
        self.paths.curves.mkdir(parents=True, exist_ok=True)
        for key in CURVE_KEYS:
            if key in metrics:
                append_curve(self.paths.curves / f"{key.replace('/', '__')}.tsv", key, report.epoch, metrics[key])

    def close(self) -> None:
        self.train_env.close()


# Learning curves that ``dvc plots show`` renders (one TSV per metric, appended at each commit).
CURVE_KEYS = (
    "denoiser/train/loss_denoising",
    "rew_end_model/train/loss_total",
    "actor_critic/train/loss_total",
    "actor_critic/train/imagined_return_mean",
    "test_dataset/return_mean",
    "train_dataset/return_mean",
)


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
    """

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.confusion: dict[str, torch.Tensor] = {}
        self.count = 0

    def add(self, metrics: dict[str, Any]) -> None:
        self.count += 1
        for k, v in metrics.items():
            if k == "confusion_matrix":
                for name, cm in v.items():
                    self.confusion[name] = self.confusion.get(name, 0) + cm.detach().cpu()
            elif "_class_" not in k:
                self.sums[k] = self.sums.get(k, 0.0) + float(v)

    def result(self) -> dict[str, float]:
        out = {k: v / self.count for k, v in self.sums.items()} if self.count else {}
        if self.confusion:
            scores = rew_end_classification_metrics(self.confusion["rew"], self.confusion["end"])
            out.update({f"classification_metrics/{k}": v for k, v in scores.items()})
        return out


def run_epoch(cfg: DiamondConfig) -> EpochReport:
    """One whole epoch outside Kedro (notebooks, scripts): open, run every phase, commit."""
    run = AtariRun.open(cfg)
    try:
        run.begin_epoch()
        run.collect()
        run.train_denoiser()
        run.train_rew_end_model()
        run.train_actor_critic()
        run.evaluate()
        return run.commit()
    finally:
        run.close()
