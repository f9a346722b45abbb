"""Catalog datasets of a training run: every artefact of an epoch, by name.

One class, :class:`RunArtefactDataset`, keyed by the artefact's name (the catalog's; ``conf/base/catalog.yml``):

=============================  =============================================================================
``replay_train``, ``replay_test``  the run's Arrow replay stores (DVC-tracked folders): a ``ReplayStore``
``csgo_dataset``, ``static_dataset``  an ingested static dataset: an ``IngestedDataset`` (its stores)
``denoiser``, ``rew_end_model``,  a ``Component``: the model, its AdamW state and LR schedule
``actor_critic``, ``upsampler``
``collector_state``            the collector: emulator states, LSTM state, open episodes
``run_state``                  counters (epoch, env steps, update counts) and, live, the run's generators
``<component>_metrics``        a phase's metrics (``train_dataset_metrics`` from ``collect``, ...)
``media``                      the epoch's pictures and videos (paths)
=============================  =============================================================================

An epoch's outputs carry a suffix: ``replay_train_collected``, ``collector_state_next``,
``denoiser_trained``, ``replay_test_evaluated``, ... They are *staged*: nothing of them is current until
the commit node makes the epoch durable with one atomic rename (``checkpoints/state.pt``, fsync'd with its
folder). Models and stores are staged in the open run (a trained model is the model it was given, trained in
place; appended replay chunks carry their epoch's number), metrics and media as files under
``<run>/staging/epoch_<N>/``. A killed epoch's staged outputs and replay chunks are discarded when the run is
reopened. An epoch output no node of this session produced (a partial run, ``--from-nodes``) reads as its
committed input: the phase did not run this epoch.

During a training session (:mod:`.run_session`) each dataset is a view of the open run. Outside one (a
notebook: ``catalog.load("replay_train")``) it reads the committed run folder the parameters name, read-only;
the live-only artefacts (the collector with its emulators) then load as the data saved for them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset, DatasetError

from diamond_kedro.io import run_session
from diamond_kedro.replay.store import ReplayStore
from diamond_kedro.training.run_common import METRIC_PREFIXES, Component, MissingComponent, RunState, TrainingRun
from diamond_kedro.utils.atomic import atomic_write_text

COMPONENTS = ("denoiser", "rew_end_model", "actor_critic", "upsampler")
# an epoch's name for an artefact -> the artefact it is a new version of
EPOCH_OUTPUTS = {
    "replay_train_collected": "replay_train",
    "replay_test_evaluated": "replay_test",
    "collector_state_next": "collector_state",
    **{f"{c}_trained": c for c in COMPONENTS},
}
COMMITTED = {"replay_train", "replay_test", "dataset", "collector_state", "run_state", *COMPONENTS}
EPOCH_FILES = {*METRIC_PREFIXES, "media"}  # staged as files under staging/epoch_<N>/
ARTEFACTS = COMMITTED | set(EPOCH_OUTPUTS) | EPOCH_FILES


class RunArtefactDataset(AbstractDataset[Any, Any]):
    """One artefact of a training run (module docstring). ``namespace``: the run's (None; a game's lower-case
    name in ``atari_games``; ``csgo``; ``static_world_model``)."""

    def __init__(self, artefact: str, namespace: str | None = None, metadata: dict[str, Any] | None = None) -> None:
        if artefact not in ARTEFACTS:
            raise DatasetError(f"unknown run artefact {artefact!r}; the artefacts are: {', '.join(sorted(ARTEFACTS))}")
        self._artefact = artefact
        self._namespace = namespace or None
        self.metadata = metadata

    # -- live: the session's open run ------------------------------------------------------------
    @property
    def _base(self) -> str:
        return EPOCH_OUTPUTS.get(self._artefact, self._artefact)

    def _run(self) -> TrainingRun:
        return run_session.run(self._namespace)

    def _live(self, run: TrainingRun) -> Any:
        base = self._base
        if base in COMPONENTS:
            return run.component(base) if base in _model_names(run) else MissingComponent(base)
        if base == "run_state":
            return run.state
        if base == "dataset":
            return run.dataset  # type: ignore[attr-defined]
        if base == "collector_state":
            return run.collector  # type: ignore[attr-defined]
        if base in ("replay_train", "replay_test"):
            return getattr(run, base)
        if base in EPOCH_FILES:  # no node of this session produced it: the phase did not run this epoch
            return [] if base == "media" else {}
        raise DatasetError(f"unknown run artefact {self._artefact!r}")  # unreachable: checked in __init__

    def load(self) -> Any:
        if run_session.is_training(self._namespace):
            value = run_session.staged(self._namespace, self._artefact)
            return value if value is not None else self._live(self._run())  # not produced this session: committed
        return self._committed()

    def save(self, data: Any) -> None:
        if self._base == "dataset":  # an ingest node's output: the files are written, the value is their view
            from diamond_kedro.training.csgo_run import IngestedDataset

            if not isinstance(data, IngestedDataset):
                raise DatasetError(f"{self._artefact}: expected an IngestedDataset, got {type(data).__name__}")
            return
        if not run_session.is_training(self._namespace):
            raise DatasetError(f"{self._artefact} is written by a training pipeline's nodes only (no run is open)")
        run = self._run()
        base = self._base
        if base in EPOCH_FILES:
            folder = run.paths.staged_epoch(run.epoch)
            if run.dist.is_main:
                folder.mkdir(parents=True, exist_ok=True)
                value = [str(p) for p in data] if base == "media" else {k: float(v) for k, v in (data or {}).items()}
                atomic_write_text(folder / f"{base}.json", json.dumps(value, indent=1, sort_keys=True))
        elif data is not self._live(run) and data != MissingComponent(base):
            # a store, collector or component is the open run's own, changed in place by the node
            raise DatasetError(f"{self._artefact}: a node returned {type(data).__name__} that is not run {run.key}'s")
        run_session.stage(self._namespace, self._artefact, data)

    def _exists(self) -> bool:
        if run_session.is_training(self._namespace):
            return True
        try:
            return _CommittedRun(self._namespace).exists(self._base)
        except Exception:
            return False

    def _describe(self) -> dict[str, Any]:
        return {"artefact": self._artefact, "namespace": self._namespace}

    # -- outside a training session: the committed run folder ------------------------------------
    def _committed(self) -> Any:
        return _CommittedRun(self._namespace).load(self._base)


def _model_names(run: TrainingRun) -> tuple[str, ...]:
    return tuple(getattr(run, "model_names", ("denoiser", "rew_end_model", "actor_critic")))


class _CommittedRun:
    """A run folder read from the session's parameters, with no run open (notebooks, ``kedro catalog``)."""

    def __init__(self, namespace: str | None) -> None:
        params = run_session.parameters()
        if not params:
            raise DatasetError("no parameters bound: load the catalog through a Kedro session or `kedro ipython`")
        self.namespace = namespace
        self.family = "atari" if namespace not in ("csgo", "static_world_model") else namespace
        spec = run_session.RunSpec(namespace, self.family)
        self.cfg = run_session.family_config(self.family, params, spec.game)
        if self.family == "atari":
            from diamond_kedro.training.run import run_key

            self.root = Path(self.cfg.run.root) / run_key(self.cfg)
        else:
            self.root = Path(self.cfg.run.root) / self.cfg.run_key
        self.state_path = self.root / "checkpoints" / "state.pt"

    def exists(self, base: str) -> bool:
        if base in ("replay_train", "replay_test"):
            return (self.root / "replay" / base.split("_")[1]).is_dir()
        if base == "dataset":
            return Path(self.cfg.dataset_dir).is_dir()
        return self.state_path.exists()

    def _state(self) -> dict[str, Any]:
        from diamond_kedro.utils.state_file import load_state_file

        if not self.state_path.exists():
            raise DatasetError(f"{self.state_path} does not exist: the run has no committed epoch yet")
        return load_state_file(self.state_path)

    def load(self, base: str) -> Any:
        if base in ("replay_train", "replay_test"):
            path = self.root / "replay" / base.split("_")[1]
            if not path.is_dir():
                raise DatasetError(f"{path} does not exist: the run has collected nothing yet")
            return ReplayStore(path, create=False)
        if base == "dataset":
            from diamond_kedro.training.csgo_run import open_ingested_dataset

            return open_ingested_dataset(self.cfg)
        if base in EPOCH_FILES:
            return self._metrics(base)
        state = self._state()
        if base == "run_state":
            return {"run_key": state["run_key"], **state["counters"]}
        if base == "collector_state":
            return state.get("collector")
        return self._component(base, state)

    def _metrics(self, base: str) -> Any:
        if base == "media":
            media = self.root / "media"
            return sorted(p for p in media.iterdir() if p.is_file()) if media.is_dir() else []
        path = self.root / "metrics.json"
        metrics = json.loads(path.read_text()) if path.exists() else {}
        prefix = METRIC_PREFIXES[base]
        return {k[len(prefix) + 1 :]: v for k, v in metrics.items() if k.startswith(prefix + "/")} if prefix else {
            k: v for k, v in metrics.items() if k.split("/")[0] in ("test_dataset", "fidelity") or "/test/" in k
        }

    def _component(self, name: str, state: dict[str, Any]) -> Component | MissingComponent:
        """The committed model on the CPU, with its optimiser and schedule, in eval mode."""
        from diamond_kedro.builders import build_agent, build_models
        from diamond_kedro.training.optim import make_optimizer, make_warmup_scheduler

        if self.family == "atari":
            agent = build_agent(self.cfg, int(state["num_actions"]))
            agent.load_state_dict(state["agent"])
            model = getattr(agent, name, None)
        else:
            from diamond_kedro.datasets.writer import ActionSpec

            models = build_models(self.cfg, ActionSpec.from_dict(state["action"]))
            model = models.get(name)
            if model is not None:
                model.load_state_dict(state["models"][name])
        if model is None or name not in state["optimizers"]:
            return MissingComponent(name)
        t = getattr(self.cfg, name).training
        optimizer = make_optimizer(model, lr=t.lr, weight_decay=t.weight_decay, eps=t.eps)
        optimizer.load_state_dict(state["optimizers"][name])
        scheduler = make_warmup_scheduler(optimizer, t.warmup_steps)
        scheduler.load_state_dict(state["schedulers"][name])
        model.eval()
        return Component(name, model, optimizer, scheduler, None, int(state["counters"]["num_batch_train"][name]))


__all__ = ["RunArtefactDataset", "RunState", "Component"]
