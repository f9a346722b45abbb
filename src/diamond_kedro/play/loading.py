"""Finding and loading what to play: Atari agents and CS:GO world models, from every place they live.

Atari agent sources: a run folder (``data/runs/<Game>_seed<seed>_<name>``: its newest
``checkpoints/agent_versions/agent_epoch_*.pt``, else the agent inside ``checkpoints/state.pt``), one of our
agent files, an MLflow URI (``runs:/<run id>/<path>`` or ``models:/<name>/<version|latest>``), or the
authors' published agent file (``atari_100k/models/<Game>.pt``).
CS:GO sources: a CS:GO run folder (``data/runs/csgo_<name>``) or the authors' ``csgo/model/csgo.pt``.

Every mistake (a missing file, a file of the other game family, an agent for another game, a shape
mismatch) raises :class:`PlayError` with one line saying what is wrong and what to do.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch

from diamond_kedro.envs.atari import ATARI_100K_GAMES, resolve_game
from diamond_kedro.models.agent import Agent, load_authors_checkpoint, load_checkpoint, load_state_dict_strict
from diamond_kedro.models.denoiser import Denoiser
from diamond_kedro.errors import UserError
from diamond_kedro.utils.state_file import StateFileError, load_state_file

MLFLOW_MODEL_PREFIX = "diamond-"  # registered model names: diamond-<Game>, diamond-csgo
_RUN_FOLDER = re.compile(r"^(?P<game>[A-Za-z]+)_seed(?P<seed>-?\d+)_(?P<name>.+)$")


class PlayError(UserError, ValueError):
    """Bad input to ``play``: the CLI prints the message as one line (no traceback)."""


def _first_line(exc: BaseException) -> str:
    """The exception's message on one line (multi-line messages, e.g. state-dict mismatches, joined by ';')."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return "; ".join(lines) if lines else type(exc).__name__


def game_name(game: str) -> str:
    """``breakout`` / ``BreakoutNoFrameskip-v4`` -> ``Breakout`` (PlayError listing the games otherwise)."""
    try:
        return resolve_game(game).removesuffix("NoFrameskip-v4")
    except ValueError as exc:
        raise PlayError(_first_line(exc)) from None


def _torch_load(path: Path, what: str, run_state: bool = False) -> Any:
    """Every file loads as data only: agent and model files with ``weights_only`` (tensors and containers,
    nothing executable), a run's ``state.pt`` through ``utils.state_file`` (the same restricted unpickler;
    an old pickled state is refused with the command that converts it)."""
    if not path.exists():
        raise PlayError(f"{what} {path} does not exist")
    if not path.is_file():
        raise PlayError(f"{what} {path} is not a file")
    if run_state:
        try:
            return load_state_file(path)
        except StateFileError as exc:
            raise PlayError(_first_line(exc)) from None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise PlayError(f"cannot read {what} {path}: {_first_line(exc)}") from None


def _is_csgo_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and any(str(k).startswith("upsampler.") for k in obj)


def _is_atari_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and any(str(k).startswith("actor_critic.") for k in obj)


# ----- Atari ----------------------------------------------------------------------------------------


@dataclass
class AtariSource:
    agent: Agent
    game: str  # "Breakout"
    source: str  # what was loaded, for the window title and logs
    run_root: Path | None = None  # the run folder when known (its test replay gives contexts)


def _check_game(agent: Agent, game: str, source: str) -> None:
    expected = ATARI_100K_GAMES[game]
    if agent.num_actions != expected:
        raise PlayError(
            f"{source} has {agent.num_actions} actions but {game} has {expected}: "
            "it is an agent of another game (pass the right --game)"
        )


def _game_from_path(path: Path) -> str | None:
    """The game of a run folder, or of an agent file inside one (``<run>/checkpoints/agent_versions/x.pt``)."""
    for part in (path, *path.parents):
        m = _RUN_FOLDER.match(part.name)
        if m and m.group("game").lower() in {g.lower() for g in ATARI_100K_GAMES}:
            return game_name(m.group("game"))
    return None


def _run_root_of(path: Path) -> Path | None:
    for part in (path, *path.parents):
        if _RUN_FOLDER.match(part.name) and (part / "checkpoints").is_dir():
            return part
    return None


def newest_agent_file(run_root: Path) -> Path | None:
    files = sorted((run_root / "checkpoints" / "agent_versions").glob("agent_epoch_*.pt"))
    return files[-1] if files else None


def load_agent_file(path: str | os.PathLike, game: str | None = None) -> AtariSource:
    """One of our agent checkpoints (``save_checkpoint`` of an ``Agent``), or an authors' agent file."""
    path = Path(path)
    payload = _torch_load(path, "agent file")
    if isinstance(payload, Mapping) and str(payload.get("format", "")).startswith("diamond-kedro/checkpoint"):
        if payload.get("config_type") != "AgentConfig":
            raise PlayError(f"{path} holds a {payload.get('config_type')} checkpoint, not an agent (AgentConfig)")
        try:
            agent = load_checkpoint(path)
        except ValueError as exc:
            raise PlayError(f"{path} does not match its agent config: {_first_line(exc)} (see load_checkpoint)") from None
        kind = "agent"
    elif _is_csgo_state_dict(payload):
        raise PlayError(f"{path} is a CS:GO world model, not an Atari agent: use `diamond-kedro play csgo --checkpoint {path}`")
    elif _is_atari_state_dict(payload):
        try:
            agent = load_authors_checkpoint(payload)
        except ValueError as exc:
            raise PlayError(f"{path}: not a DIAMOND Atari agent at the paper's size: {_first_line(exc)}") from None
        kind = "authors' agent"
    elif isinstance(payload, Mapping) and str(payload.get("format", "")).startswith("diamond-kedro-csgo"):
        raise PlayError(f"{path} is a CS:GO run state: use `diamond-kedro play csgo`")
    else:
        raise PlayError(f"{path} is neither a diamond-kedro agent checkpoint nor an authors' agent file")
    game = game_name(game) if game else _game_from_path(path)
    if game is None:
        raise PlayError(f"{path}: cannot tell which game this agent plays; pass --game <Game>")
    _check_game(agent, game, f"{kind} {path}")
    return AtariSource(agent, game, f"{kind} {path}", _run_root_of(path))


def load_run_folder(root: str | os.PathLike, game: str | None = None) -> AtariSource:
    """A training run's newest agent (``agent_versions``), else the agent in its ``state.pt``."""
    root = Path(root)
    if not root.is_dir():
        raise PlayError(f"run folder {root} does not exist")
    state_path = root / "checkpoints" / "state.pt"
    newest = newest_agent_file(root)
    if newest is not None:
        src = load_agent_file(newest, game)
        src.run_root = root
        return src
    if not state_path.exists():
        raise PlayError(f"{root} is not a run folder with an agent (no checkpoints/agent_versions/*.pt, no checkpoints/state.pt)")
    state = _torch_load(state_path, "run state", run_state=True)
    if isinstance(state, Mapping) and str(state.get("format", "")).startswith("diamond-kedro-csgo"):
        raise PlayError(f"{root} is a CS:GO run: use `diamond-kedro play csgo --run {root}`")
    if not isinstance(state, Mapping) or state.get("format") != 1 or "agent" not in state:
        raise PlayError(f"{state_path} is not a diamond-kedro Atari run state")
    from diamond_kedro.builders import build_agent
    from diamond_kedro.config import parse_config

    cfg = parse_config(state["config"])
    agent = build_agent(cfg, int(state["num_actions"]))
    try:
        load_state_dict_strict(agent, state["agent"], str(state_path))
    except ValueError as exc:
        raise PlayError(_first_line(exc)) from None
    g = game_name(game or cfg.env.game)
    _check_game(agent, g, f"run {root}")
    return AtariSource(agent, g, f"run {root} (epoch {state['counters']['epoch']})", root)


# ----- MLflow ---------------------------------------------------------------------------------------


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db"


def resolve_model_uri(uri: str) -> tuple[str, dict[str, str]]:
    """``models:/<name>/<version|latest>`` -> (``runs:/...`` artifact URI of that version, its tags);
    ``runs:/...`` -> (itself, {})."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    if uri.startswith("runs:/"):
        return uri, {}
    m = re.match(r"^models:/(?P<name>[^/@]+)/(?P<version>[^/]+)$", uri)
    if not m:
        raise PlayError(f"unsupported MLflow URI {uri!r}: use runs:/<run id>/<path> or models:/<name>/<version|latest>")
    client = MlflowClient(tracking_uri=tracking_uri())
    name, version = m.group("name"), m.group("version")
    try:
        versions = client.search_model_versions(f"name='{name}'")
    except MlflowException as exc:
        raise PlayError(f"cannot read the MLflow model registry at {tracking_uri()}: {_first_line(exc)}") from None
    if not versions:
        raise PlayError(f"no registered model {name!r} in {tracking_uri()} (train a run first, or set MLFLOW_TRACKING_URI)")
    if version == "latest":
        chosen = max(versions, key=lambda v: int(v.version))
    else:
        chosen = next((v for v in versions if str(v.version) == version), None)
        if chosen is None:
            raise PlayError(f"model {name!r} has no version {version} (versions: {sorted(int(v.version) for v in versions)})")
    return chosen.source, dict(chosen.tags or {})


def download_mlflow_file(uri: str, dst: str | os.PathLike | None = None) -> tuple[Path, dict[str, str]]:
    """The local copy of the file an MLflow URI points at, and the registry tags (if a model version)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    artifact_uri, tags = resolve_model_uri(uri)
    dst = Path(dst) if dst is not None else Path(tempfile.mkdtemp(prefix="diamond-play-"))
    try:
        local = mlflow.artifacts.download_artifacts(artifact_uri=artifact_uri, tracking_uri=tracking_uri(), dst_path=str(dst))
    except (MlflowException, OSError) as exc:
        raise PlayError(f"cannot download {artifact_uri} from MLflow ({tracking_uri()}): {_first_line(exc)}") from None
    local_path = Path(local)
    if local_path.is_dir():  # a folder artifact: the one checkpoint inside
        files = sorted(local_path.rglob("*.pt"))
        if len(files) != 1:
            raise PlayError(f"{uri} is a folder with {len(files)} .pt files; point at one file")
        local_path = files[0]
    return local_path, tags


def load_mlflow_agent(uri: str, game: str | None = None) -> AtariSource:
    import shutil

    folder = Path(tempfile.mkdtemp(prefix="diamond-play-"))
    try:
        return _load_mlflow_agent(uri, game, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)  # the agent is in memory now


def _load_mlflow_agent(uri: str, game: str | None, folder: Path) -> AtariSource:
    path, tags = download_mlflow_file(uri, folder)
    if game is None:
        game = tags.get("game")
    if game is None and uri.startswith(f"models:/{MLFLOW_MODEL_PREFIX}"):
        game = uri.split("/")[1].removeprefix(MLFLOW_MODEL_PREFIX)
    if game is None and uri.startswith("runs:/"):
        game = _mlflow_run_game(uri.split("/")[1])
    src = load_agent_file(path, game)
    src.source = f"{uri} ({src.source.split(' ')[0]})"
    return src


def _mlflow_run_game(run_id: str) -> str | None:
    from mlflow import MlflowClient

    try:
        params = MlflowClient(tracking_uri=tracking_uri()).get_run(run_id).data.params
    except Exception:
        return None
    return params.get("env.game")


def load_atari_source(
    *, run: str | None = None, agent: str | None = None, authors: str | None = None, mlflow_uri: str | None = None,
    game: str | None = None,
) -> AtariSource:
    """Exactly one of the four sources (see the module docstring)."""
    given = [(k, v) for k, v in (("--run", run), ("--agent", agent), ("--authors", authors), ("--mlflow", mlflow_uri)) if v]
    if len(given) != 1:
        raise PlayError("give exactly one of --run, --agent, --authors, --mlflow" + (f" (got {', '.join(k for k, _ in given)})" if given else ""))
    if game is not None:
        game = game_name(game)
    if run:
        return load_run_folder(run, game)
    if agent:
        return load_agent_file(agent, game)
    if authors:
        if game is None:
            raise PlayError("--authors needs --game <Game>: the authors' agent files do not name their game")
        return load_agent_file(authors, game)
    return load_mlflow_agent(mlflow_uri, game)  # type: ignore[arg-type]


# ----- CS:GO ----------------------------------------------------------------------------------------


@dataclass
class CsgoSource:
    """A world model of the static family: the CS:GO model, or a ``static_world_model`` run on any recorded
    gameplay (its own action space; no upsampler when it was trained without one)."""

    denoiser: Denoiser
    upsampler: Denoiser | None
    source: str
    data_root: Path | None = None  # the ingested dataset of a run (its test split gives contexts)
    action: Any = None  # the run's datasets.writer.ActionSpec; None: CS:GO's 51-dim multi-hot vector
    family: str = "csgo"  # "csgo" or "static_world_model"


def _static_family_config(config: Mapping[str, Any], state_path: Path) -> tuple[Any, str]:
    """The validated config of a static-family run state and its family: a ``static_world_model`` run's
    config has a ``dataset`` section, a CS:GO run's a ``data`` section."""
    from diamond_kedro.csgo.config import parse_csgo_config
    from diamond_kedro.datasets.config import parse_static_config

    static = isinstance(config, Mapping) and "dataset" in config
    try:
        cfg = parse_static_config(dict(config)) if static else parse_csgo_config(config)
    except ValueError as exc:
        raise PlayError(f"{state_path}: {_first_line(exc)}") from None
    return cfg, "static_world_model" if static else "csgo"


def load_csgo_source(*, run: str | None = None, checkpoint: str | None = None) -> CsgoSource:
    """A run folder of the static family (``checkpoints/state.pt`` of a CS:GO or ``static_world_model`` run),
    or the authors' ``csgo.pt`` (flat ``denoiser.`` / ``upsampler.`` state dict, paper-size models)."""
    from diamond_kedro.csgo.config import CsgoConfig
    from diamond_kedro.datasets.writer import ActionSpec
    from diamond_kedro.builders import CSGO_ACTION, CSGO_STATE_FORMAT, build_models

    if bool(run) == bool(checkpoint):
        raise PlayError("give exactly one of --run, --checkpoint")
    if run:
        root = Path(run)
        state_path = root / "checkpoints" / "state.pt"
        if not root.is_dir():
            raise PlayError(f"run folder {root} does not exist")
        if not state_path.exists():
            raise PlayError(f"{root} has no checkpoints/state.pt: not a trained CS:GO or static_world_model run")
        state = _torch_load(state_path, "run state", run_state=True)
        if isinstance(state, Mapping) and state.get("format") == 1 and "agent" in state:
            raise PlayError(f"{root} is an Atari run: use `diamond-kedro play atari --run {root}`")
        if not isinstance(state, Mapping) or state.get("format") != CSGO_STATE_FORMAT:
            raise PlayError(f"{state_path} is not a diamond-kedro CS:GO or static_world_model run state")
        cfg, family = _static_family_config(state["config"], state_path)
        try:
            action = ActionSpec.from_dict(state.get("action", CSGO_ACTION.to_dict()))
        except (TypeError, ValueError) as exc:
            raise PlayError(f"{state_path}: bad action spec {state.get('action')!r}: {_first_line(exc)}") from None
        models = build_models(cfg, action)
        for name, model in models.items():
            if name not in state.get("models", {}):
                raise PlayError(f"{state_path} has no {name} weights (its config has one)")
            try:
                load_state_dict_strict(model, state["models"][name], f"{state_path} [{name}]")
            except ValueError as exc:
                raise PlayError(_first_line(exc)) from None
        return CsgoSource(models["denoiser"], models.get("upsampler"), f"run {root} (epoch {state['counters']['epoch']})",
                          Path(cfg.dataset_dir), action=action, family=family)
    path = Path(checkpoint)  # type: ignore[arg-type]
    payload = _torch_load(path, "CS:GO checkpoint")
    if _is_atari_state_dict(payload) or (isinstance(payload, Mapping) and payload.get("config_type") == "AgentConfig"):
        raise PlayError(f"{path} is an Atari agent, not a CS:GO world model: use `diamond-kedro play atari`")
    if not _is_csgo_state_dict(payload):
        raise PlayError(f"{path} is not a CS:GO world model (expected denoiser.* and upsampler.* weights)")
    models = build_models(CsgoConfig())
    for name, model in models.items():
        sub = {k[len(name) + 1 :]: v for k, v in payload.items() if k.startswith(name + ".")}
        try:
            load_state_dict_strict(model, sub, f"{path} [{name}]")
        except ValueError as exc:
            raise PlayError(_first_line(exc) + " (expected the paper-size CS:GO models)") from None
    return CsgoSource(models["denoiser"], models["upsampler"], f"authors' model {path}")
