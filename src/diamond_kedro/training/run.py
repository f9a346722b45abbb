"""One DIAMOND training run on an Atari game (spec §6): what persists between epochs, and the epoch itself.

A run lives in ``<run.root>/<Game>_seed<seed>_<name>/``::

    replay/train/, replay/test/     Arrow replay stores (DVC-tracked)
    checkpoints/state.pt            everything needed to resume: models, optimisers, LR schedules,
                                    counters, the collector (emulator states, LSTM, episode ids), RNGs
    checkpoints/agent_versions/     agent weights every ``save_agent_every`` epochs (+ the latest)
    metrics.json, curves/*.tsv      the latest epoch's metrics and learning curves (``dvc metrics/plots``)

An epoch is: ``begin_epoch`` -> ``collect`` -> ``train_denoiser`` -> ``train_rew_end_model`` ->
``train_actor_critic`` -> ``evaluate`` -> ``commit`` (all of them: ``AtariRun.run_epoch``; one Kedro node
each: the ``atari_epoch`` pipeline). Nothing of an epoch is durable until ``commit``
rewrites ``state.pt`` atomically; replay chunks written by an uncommitted epoch carry its number and are
rolled back when the run is reopened, and the collector resumes from the committed emulator states, so a
run killed at any point resumes with no lost or duplicated transitions. The folder layout, state file,
epoch bookkeeping and commit protocol shared with the CS:GO run are in :mod:`.run_common`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from diamond_kedro.builders import build_agent, sampler_config
from diamond_kedro.config import ConfigError, DiamondConfig
from diamond_kedro.distributed import DataParallelLoss, valid_transitions
from diamond_kedro.envs.atari import TorchAtariEnv, game_short_name, make_atari_env
from diamond_kedro.envs.collector import Collector
from diamond_kedro.envs.world_model_env import WorldModelEnv, WorldModelEnvConfig
from diamond_kedro.models.agent import compile_agent, save_checkpoint
from diamond_kedro.replay.batch import Batch
from diamond_kedro.replay.sampler import SegmentSampler, prefetch
from diamond_kedro.replay.store import ReplayStore
from diamond_kedro.reporting import EpochReport
from diamond_kedro.training.evaluation import evaluate_agent
from diamond_kedro.training.imagination import RolloutLoop, actor_critic_loss
from diamond_kedro.training.run_common import (  # noqa: F401  (re-exported: the public API of this module)
    BaseRunPaths,
    Component,
    MetricAccumulator,
    RunIsOver,
    RunStateMismatch,
    TrainingRun,
    append_curve,
    compile_mode,
    resolve_device,
)
from diamond_kedro.utils.allocator import tune_glibc_malloc

log = logging.getLogger(__name__)

COMPONENTS = ("denoiser", "rew_end_model", "actor_critic")

# Learning curves that ``dvc plots show`` renders (one TSV per metric, appended at each commit).
CURVE_KEYS = (
    "denoiser/train/loss_denoising",
    "rew_end_model/train/loss_total",
    "actor_critic/train/loss_total",
    "actor_critic/train/imagined_return_mean",
    "test_dataset/return_mean",
    "train_dataset/return_mean",
)


def game_name(cfg: DiamondConfig) -> str:
    """``Breakout`` for ``Breakout`` and ``BreakoutNoFrameskip-v4`` alike (``Catch`` for our own game)."""
    return game_short_name(cfg.env.game)


def run_key(cfg: DiamondConfig) -> str:
    return f"{game_name(cfg)}_seed{cfg.run.seed}_{cfg.run.name}"


@dataclass(frozen=True)
class RunPaths(BaseRunPaths):
    """An Atari run's folder: the common files plus the replay stores and the agent versions."""

    @property
    def replay_train(self) -> Path:
        return self.root / "replay" / "train"

    @property
    def replay_test(self) -> Path:
        return self.root / "replay" / "test"

    @property
    def agent_versions(self) -> Path:
        return self.checkpoints / "agent_versions"


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
# the run
# --------------------------------------------------------------------------------------------------


class AtariRun(TrainingRun):
    """State and phases of one training run. Use ``AtariRun.open(cfg)``; see the module docstring
    (and :mod:`diamond_kedro.training.run_common` for the parts shared with the CS:GO run)."""

    kind = "atari"
    curve_keys = CURVE_KEYS
    paths_cls = RunPaths
    paths: RunPaths
    counters: Counters

    def __init__(self, cfg: DiamondConfig, root: Path | None = None) -> None:
        if cfg.run.tune_malloc:
            tune_glibc_malloc()
        super().__init__(cfg, run_key(cfg), root)
        self.rng = np.random.default_rng(cfg.run.seed)

        self.train_env = self.make_env(num_envs=cfg.env.num_envs, done_on_life_loss=True, seed=cfg.run.seed)
        self.num_actions = self.train_env.num_actions
        self.agent = build_agent(cfg, self.num_actions).to(self.device)
        if cfg.run.compile:  # in place: state-dict keys and checkpoints stay those of the plain modules
            compile_agent(self.agent, mode=compile_mode(cfg.run.compile))
        self._make_optimizers({name: getattr(self.agent, name) for name in COMPONENTS})

        # repair=True: a run killed between a chunk's rename and the manifest's rewrite is re-manifested from
        # the files; whatever the uncommitted epoch wrote is then rolled back in ``open``.
        # Under torchrun only rank 0 repairs (the others open after it, read-only: ``TrainingRun.open``).
        self.replay_train = ReplayStore(self.paths.replay_train, repair=self.dist.is_main)
        self.replay_test = ReplayStore(self.paths.replay_test, repair=self.dist.is_main)
        self.collector = Collector(
            self.train_env,
            store=self.replay_train,
            policy=self.agent.actor_critic,
            epsilon=cfg.collect.epsilon,
            train=True,
            seed=cfg.run.seed,
        )
        self.counters = Counters()
        self._wm_env: WorldModelEnv | None = None
        self._rollout: RolloutLoop | None = None
        self._samplers: dict[str, SegmentSampler] = {}
        self._losses: dict[str, DataParallelLoss] = {}

    def make_env(self, *, num_envs: int, done_on_life_loss: bool, seed: int) -> TorchAtariEnv:
        """The configured game on the run's device: the train env, or a test env (``evaluation.py``)."""
        e = self.cfg.env
        return make_atari_env(
            e.game,
            num_envs=num_envs,
            done_on_life_loss=done_on_life_loss,
            seed=seed,
            device=self.device,
            noop_max=e.noop_max,
            frame_skip=e.frame_skip,
            screen_size=e.size,
            max_num_frames_per_episode=e.max_num_frames_per_episode,
        )

    # -- opening and resuming --------------------------------------------------------------------
    def _start_fresh(self) -> None:
        # a first epoch killed before its commit: throw away its partial replay
        self.replay_train.rollback(0)
        self.replay_test.clear()

    def _own_rng_state(self) -> dict[str, Any]:
        return {"numpy_generator": self.rng.bit_generator.state}

    def _set_own_rng_state(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["numpy_generator"]

    def _state_dict(self) -> dict[str, Any]:
        return {
            "format": 1,
            **super()._state_dict(),
            "num_actions": self.num_actions,
            "agent": self.agent.state_dict(),
            "collector": self.collector.state_dict(),
        }

    def _check_state(self, state: Any, path: Path) -> None:
        if not isinstance(state, dict) or state.get("format") != 1:
            raise RunStateMismatch(f"{path} is not a diamond-kedro run state (format 1)")
        if state["num_actions"] != self.num_actions:
            raise RunStateMismatch(
                f"{path} was trained with {state['num_actions']} actions, {self.cfg.env.game} has {self.num_actions}"
            )

    def _load_components(self, state: dict[str, Any], path: Path) -> None:
        try:
            self.agent.load_state_dict(state["agent"], strict=True)
        except RuntimeError as exc:
            raise RunStateMismatch(
                f"{path} does not match the configured models (did the model parameters change since the run "
                f"started?): {exc}"
            ) from exc
        self.collector.load_state_dict(state["collector"])

    def _load_state(self) -> None:
        super()._load_state()
        # chunks written by an epoch that never committed are not part of the run
        if self.dist.is_main:
            self.replay_train.rollback(self.counters.epoch)

    def _progress_note(self) -> str:
        return f" ({self.counters.env_steps} env steps)"

    # -- epoch bookkeeping -----------------------------------------------------------------------
    @property
    def final_metrics(self) -> dict[str, float]:
        return self.counters.final_metrics

    @property
    def total_epochs(self) -> int | None:
        """The collecting epochs (known after the initial collection) and the final ones (spec §6.1)."""
        total = self.counters.num_epochs_collect
        return None if total is None else total + self.cfg.run.num_final_epochs

    def model(self, name: str) -> torch.nn.Module:
        return getattr(self.agent, name)

    def run_epoch(self) -> EpochReport:
        """One whole epoch, every phase in order (spec §6.1); returns its committed report. The same calls,
        on the same artefacts, as the ``atari_epoch`` pipeline's nodes."""
        self.begin_epoch()
        denoiser, rew_end_model, actor_critic = (self.component(c) for c in COMPONENTS)
        metrics = {"train_dataset_metrics": self.collect(actor_critic, self.collector, self.replay_train)}
        metrics["denoiser_metrics"] = self.train_component(denoiser, self.replay_train)
        metrics["rew_end_model_metrics"] = self.train_component(rew_end_model, self.replay_train)
        metrics["actor_critic_metrics"] = self.train_actor_critic(actor_critic, denoiser, rew_end_model, self.replay_train)
        metrics["evaluate_metrics"], media = self.evaluate(actor_critic, denoiser, rew_end_model, self.replay_test)
        return self.commit(metrics, media)

    # -- collection (spec §1.6, §6.1) -------------------------------------------------------------
    def collect(
        self, actor_critic: Component | None = None, collector: Collector | None = None, replay: ReplayStore | None = None
    ) -> dict[str, float]:
        """This epoch's real experience: ``collector`` (emulators and their state) plays ``actor_critic``'s policy
        and appends to ``replay`` (defaults: the run's own). Returns the ``train_dataset`` metrics."""
        actor_critic = self.own(actor_critic, "actor_critic")
        collector = self.collector if collector is None else collector
        replay = self.replay_train if replay is None else replay
        if collector is not self.collector or replay is not self.replay_train:
            raise ValueError(f"run {self.key} collects with its own collector into its own replay_train")
        collector.policy, collector.store = actor_critic.model, replay
        stats = self._collect() if self.dist.is_main else {}
        if self.dist.enabled:
            # the other ranks train on what rank 0 collected: take its counters, re-read the store
            self.counters = self.dist.broadcast(self.counters)
            if not self.dist.is_main:
                self.replay_train.refresh()
        return stats

    def _collect(self) -> dict[str, float]:
        c = self.cfg.collect
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
                    raise ConfigError(
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
        return stats

    # -- world-model training (spec §2.3, §4.2) --------------------------------------------------
    def seq_len(self, name: str) -> int:
        """Segment length each component trains on (spec §2.3, §4.2); ``actor_critic``: the world-model
        env's initial contexts (spec §5)."""
        d = self.cfg.denoiser.model
        if name == "denoiser":
            return d.num_steps_conditioning + 1 + d.num_autoregressive_steps
        if name == "rew_end_model":
            return self.cfg.rew_end_model.training.seq_length
        return d.num_steps_conditioning

    def _check_replay(self, replay: ReplayStore | None) -> None:
        """The samplers (and their seeded generators, part of the resumable state) draw from the run's own store."""
        if replay is not None and replay is not self.replay_train:
            raise ValueError(f"run {self.key} trains on its own replay_train ({self.paths.replay_train})")

    def _sampler(self, name: str, replay: ReplayStore | None = None) -> SegmentSampler:
        self._check_replay(replay)
        if name not in self._samplers:
            t = getattr(self.cfg, name).training
            # world-model components: this rank's rows of the global batch (``distributed``); the
            # actor-critic trains on rank 0 alone, on whole batches
            shard = self.dist.shard if name != "actor_critic" else (lambda s: s)
            self._samplers[name] = shard(SegmentSampler(
                self.replay_train,
                batch_size=t.batch_size,
                seq_len=self.seq_len(name),
                padding="both" if name == "rew_end_model" else "left",
                weights=t.sample_weights,
                seed=int(self.rng.integers(2**31)),
                device=self.device,
                pin_memory=self.device.type == "cuda",  # non-blocking copies from pinned staging buffers
            ))
        return self._samplers[name]

    def _num_steps(self, name: str) -> int:
        """The long first training (spec §6.1: 10 000 / 10 000 / 5 000 steps) is the component's first one,
        whichever epoch that is (a standalone ``collect`` epoch may come before any training)."""
        t = getattr(self.cfg, name).training
        return t.steps_first_epoch if self.counters.num_batch_train[name] == 0 else t.steps_per_epoch

    def train_component(self, component: Component, replay: ReplayStore) -> dict[str, float]:
        """This epoch's updates of a world-model component (``denoiser``: spec §2.3, ``rew_end_model``: §4.2) on
        segments of ``replay``; returns the ``<name>_metrics``."""
        name = self.own(component).name
        if name not in ("denoiser", "rew_end_model"):
            raise ValueError(f"{name} is not a world-model component of an Atari run")
        return self._train_phase(name, lambda: self._train_world_model_component(component, replay))

    def _train_world_model_component(self, component: Component, replay: ReplayStore) -> dict[str, float]:
        name, model = component.name, component.model
        sampler = self._sampler(name, replay)
        if name not in self._losses:  # DDP (gradients averaged over the ranks) under torchrun
            self._losses[name] = self.dist.loss(model)
        compute_loss = self._losses[name]
        model.train()
        # on CUDA the phase's batches are made on a background thread while the GPU trains (the same
        # batches in the same order: ``replay.sampler.prefetch``); on CPU that thread would take cores
        # from the training itself
        batches = prefetch(sampler.sample, self._num_steps(name)) if self.device.type == "cuda" else None

        def loss_fn() -> tuple[torch.Tensor, dict[str, Any]]:
            batch = next(batches) if batches is not None else sampler.sample()
            # the rew_end_model's loss is a mean over valid transitions, whose number differs by shard
            count = valid_transitions(batch) if name == "rew_end_model" and self.dist.enabled else None
            return compute_loss(batch, count=count) if count is not None else compute_loss(batch)

        try:
            return self._train_steps(component, loss_fn)
        finally:
            if batches is not None:
                batches.close()

    def train_denoiser(self) -> dict[str, float]:
        return self.train_component(self.component("denoiser"), self.replay_train)

    def train_rew_end_model(self) -> dict[str, float]:
        return self.train_component(self.component("rew_end_model"), self.replay_train)

    # -- RL in imagination (spec §5) -------------------------------------------------------------
    def world_model_env(self) -> WorldModelEnv:
        """Imagination (spec §5): the run's denoiser and reward/end model, started from replay_train contexts."""
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

    def _agent_parts(self, *given: Component | None) -> tuple[Component, ...]:
        """(actor_critic, denoiser, rew_end_model): those given, checked to be this run's, else the run's own."""
        return tuple(self.own(c, n) for c, n in zip(given, ("actor_critic", "denoiser", "rew_end_model")))

    def train_actor_critic(
        self,
        actor_critic: Component | None = None,
        denoiser: Component | None = None,
        rew_end_model: Component | None = None,
        replay: ReplayStore | None = None,
    ) -> dict[str, float]:
        """This epoch's updates of ``actor_critic`` in imagination: rollouts in the world model made of
        ``denoiser`` and ``rew_end_model``, started from ``replay`` contexts (spec §5; defaults: the run's)."""
        actor_critic, denoiser, rew_end_model = self._agent_parts(actor_critic, denoiser, rew_end_model)
        self._check_replay(replay)  # the imagined episodes start from this run's replay_train
        if not self.dist.is_main:  # imagination stays on rank 0 (why: ``distributed``)
            return {}
        return self._train_phase("actor_critic", lambda: self._train_actor_critic(actor_critic, denoiser, rew_end_model))

    def _train_actor_critic(self, actor_critic: Component, denoiser: Component, rew_end_model: Component) -> dict[str, float]:
        t = self.cfg.actor_critic.training
        ac = actor_critic.model
        if self._rollout is None:
            self._rollout = RolloutLoop(self.world_model_env(), ac, epsilon=0.0)
        rollout_loop = self._rollout

        def loss_fn() -> tuple[torch.Tensor, dict[str, Any]]:
            return actor_critic_loss(
                rollout_loop.run(t.backup_every),
                gamma=t.gamma,
                lambda_=t.lambda_,
                weight_value_loss=t.weight_value_loss,
                weight_entropy_loss=t.weight_entropy_loss,
            )

        denoiser.model.eval()
        rew_end_model.model.eval()
        ac.train()
        return self._train_steps(actor_critic, loss_fn)

    # -- evaluation (spec §6.3) ------------------------------------------------------------------
    def evaluate(
        self,
        actor_critic: Component | None = None,
        denoiser: Component | None = None,
        rew_end_model: Component | None = None,
        replay_test: ReplayStore | None = None,
    ) -> tuple[dict[str, float], list[Path]]:
        """Every ``evaluate.every`` epochs and at the last (spec §6.3): test games of ``actor_critic`` played into
        ``replay_test``, the world model's losses and fidelity on them. Returns ``evaluate_metrics`` and the
        epoch's media (both empty on the other epochs)."""
        self._agent_parts(actor_critic, denoiser, rew_end_model)  # the agent evaluated is the run's, these its parts
        if replay_test is not None and replay_test is not self.replay_test:
            raise ValueError(f"run {self.key} plays its test games into its own replay_test")
        if not self.should_evaluate() or not self.dist.is_main:
            return {}, []
        with self._timed("evaluate"):
            result = evaluate_agent(
                self.cfg.evaluate,
                self.agent,
                self.replay_test,
                make_test_env=lambda seed: self.make_env(num_envs=1, done_on_life_loss=False, seed=seed),
                rng=self.rng,
                seq_len=self.seq_len,
                device=self.device,
                sampler=sampler_config(self.cfg),
                context_length=self.cfg.denoiser.model.num_steps_conditioning,
                media_stem=self.paths.media / f"epoch_{self.epoch:05d}",
                title=f"{self.cfg.env.game}, epoch {self.epoch}: open-loop imagination vs real",
                is_last_epoch=self.is_last_epoch,
            )
            self.counters.num_test_episodes += result.num_test_episodes
            if result.final_metrics:
                self.counters.final_metrics = result.final_metrics
        return dict(result.metrics), list(result.media)

    # -- commit (the protocol is TrainingRun.commit) -----------------------------------------------
    media_folder = "imagination"

    def _before_commit(self, report: EpochReport) -> None:
        report.metrics["env_steps"] = float(self.counters.env_steps)

    def _after_save(self, report: EpochReport) -> None:
        self._save_agent_version(report)

    def _metrics_summary(self) -> dict[str, Any]:
        return {"env_steps": self.counters.env_steps}

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
        # every epoch: a pointer to the latest agent (a DVC-tracked file); every few epochs: the file itself
        report.tags["latest_agent_checkpoint"] = str(path)
        if epoch % every == 0 or self.is_over:
            report.artifacts.append(("checkpoints", path))

    def close(self) -> None:
        self.train_env.close()
        super().close()


def run_epoch(cfg: DiamondConfig) -> EpochReport:
    """One whole epoch outside Kedro (notebooks, scripts): open, run every phase, commit."""
    run = AtariRun.open(cfg)
    try:
        return run.run_epoch()
    finally:
        run.close()
