"""The training runs of one Kedro session: live resources, not data.

A training pipeline's nodes are functions of catalog datasets (``replay_train``, ``denoiser``, ...:
:mod:`.run_datasets`). What those datasets are views of -- the open run folder with its lock, the device, the
emulators, the DDP process group -- is a resource of the session: :class:`~diamond_kedro.hooks.RunSessionHook`
says before the first node which runs the pipeline trains (:func:`training_runs`, from the nodes' tags and
namespaces), the first dataset that needs one opens it (and begins its epoch), and the hook closes them all
after the last node or on an error (giving the run folders' locks back; an uncommitted epoch is rolled back at
the next open).

Opening on first use rather than in the hook keeps a failure to open (a locked folder, a finished run, a
state that does not fit) inside the pipeline run, where Kedro's ``on_pipeline_error`` hooks see it.

Outside a training session (a notebook's ``catalog.load("replay_train")``) no run is open: the datasets
read the committed run folder named by the session's parameters (:func:`bind_parameters`), read-only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable

if TYPE_CHECKING:  # imported lazily: every Kedro command loads the hooks, few of them train
    from diamond_kedro.training.run_common import TrainingRun

log = logging.getLogger(__name__)

# Node tags that say which kind of run a node trains (read with the node's namespace).
ATARI_TAG = "atari_train"
CSGO_TAG = "csgo_train"
STATIC_TAG = "static_world_model_train"
FAMILY_OF_TAG = {ATARI_TAG: "atari", CSGO_TAG: "csgo", STATIC_TAG: "static_world_model"}



@dataclass(frozen=True)
class RunSpec:
    """One run a pipeline trains: its namespace (None, a game's lower-case name, ``csgo``, ...) and family."""

    namespace: str | None
    family: str

    @property
    def game(self) -> str | None:
        """The game a namespaced Atari pipeline (``atari_games``) pins."""
        if self.family != "atari" or not self.namespace:
            return None
        from diamond_kedro.envs.atari import ATARI_100K_GAMES

        return {g.lower(): g for g in ATARI_100K_GAMES}.get(self.namespace)


def training_runs(pipeline: Any) -> list[RunSpec]:
    """The runs ``pipeline``'s nodes train, one per (namespace, family), in the nodes' order."""
    seen: dict[RunSpec, None] = {}
    for node in pipeline.nodes:
        for tag, family in FAMILY_OF_TAG.items():
            if tag in node.tags:
                seen[RunSpec(node.namespace, family)] = None
    return list(seen)


def family_config(family: str, params: dict[str, Any], game: str | None = None) -> Any:
    """The validated config of a run of ``family`` from the session's whole parameters dict."""
    if family == "atari":
        from diamond_kedro.config import parse_config

        if game is not None:
            params = {**params, "env": {**params.get("env", {}), "game": game}}
        return parse_config(params)
    if family == "csgo":
        from diamond_kedro.csgo.config import parse_csgo_config

        return parse_csgo_config(params.get("csgo"))
    from diamond_kedro.datasets.config import parse_static_config

    return parse_static_config(params.get("static_world_model"))


def open_training_run(family: str, cfg: Any) -> TrainingRun:
    """Open the run (lock, roll back an uncommitted epoch, load the committed state) and begin an epoch."""
    if family == "atari":
        from diamond_kedro.training.run import AtariRun

        return AtariRun.open_epoch(cfg)
    from diamond_kedro.training.csgo_run import CsgoRun

    return CsgoRun.open_epoch(cfg)


class _Session:
    def __init__(self) -> None:
        self.params: dict[str, Any] = {}
        self.openers: dict[str | None, Callable[[], TrainingRun]] = {}
        self.runs: dict[str | None, TrainingRun] = {}
        self.staged: dict[tuple[str | None, str], Any] = {}  # this session's epoch outputs held in memory


_session = _Session()


def bind_parameters(params: dict[str, Any]) -> None:
    """The parameters of the Kedro context just created (datasets read committed runs through them)."""
    _session.params = dict(params or {})


def parameters() -> dict[str, Any]:
    return _session.params


def expect(specs: Iterable[RunSpec], params: Callable[[], dict[str, Any]]) -> None:
    """Before a pipeline run: the runs it trains, opened on first use. ``params()`` gives the session's whole
    parameters dict (``catalog.load("parameters")``)."""
    close_all()
    for spec in specs:
        def opener(spec: RunSpec = spec) -> TrainingRun:
            return open_training_run(spec.family, family_config(spec.family, params(), spec.game))

        _session.openers[spec.namespace] = opener


def is_training(namespace: str | None) -> bool:
    """Whether this session trains the run of ``namespace`` (its datasets are then views of the open run)."""
    return namespace in _session.openers


def run(namespace: str | None) -> TrainingRun:
    """The open run of ``namespace``, opened (and its epoch begun) on first use."""
    if namespace not in _session.runs:
        if namespace not in _session.openers:
            raise KeyError(f"no training run is open for namespace {namespace!r}")
        _session.runs[namespace] = _session.openers[namespace]()
    return _session.runs[namespace]


def close_all() -> None:
    """Give every open run folder back (its lock); an epoch left uncommitted is rolled back at the next open."""
    runs, _session.runs, _session.openers, _session.staged = list(_session.runs.values()), {}, {}, {}
    for r in runs:
        try:
            r.close()
        except Exception:  # closing the others matters more than one failure here
            log.exception("closing run %s failed", r.key)


def stage(namespace: str | None, artefact: str, value: Any) -> None:
    _session.staged[(namespace, artefact)] = value


def staged(namespace: str | None, artefact: str, default: Any = None) -> Any:
    return _session.staged.get((namespace, artefact), default)
