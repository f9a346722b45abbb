"""The DIAMOND agent (denoiser + reward/end model + actor-critic) and checkpoint helpers.

Two checkpoint formats:
* ours (``save_checkpoint`` / ``load_checkpoint``): a dict carrying the model's config (as plain data)
  and its state dict, written atomically; loading rebuilds the model and loads strictly.
* the authors' agent files (``atari_100k/models/<Game>.pt``, spec Appendix B): a flat state dict with
  prefixes ``denoiser.``, ``rew_end_model.``, ``actor_critic.`` (372 entries), read by
  ``load_authors_checkpoint``.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from diamond_kedro.models.actor_critic import ActorCritic, ActorCriticConfig
from diamond_kedro.models.denoiser import Denoiser, DenoiserConfig, SigmaDistributionConfig
from diamond_kedro.models.rew_end_model import RewEndModel, RewEndModelConfig
from diamond_kedro.models.unet import InnerModelConfig
from diamond_kedro.utils.atomic import atomic_torch_save

CHECKPOINT_FORMAT = "diamond-kedro/checkpoint-v1"


@dataclass
class AgentConfig:
    """``num_actions`` is copied into the three component configs (their own value must agree or be None)."""

    num_actions: int
    denoiser: DenoiserConfig = field(default_factory=DenoiserConfig)
    rew_end_model: RewEndModelConfig = field(default_factory=RewEndModelConfig)
    actor_critic: ActorCriticConfig | None = None  # None → paper defaults

    def __post_init__(self) -> None:
        a = self.num_actions
        if not isinstance(a, int) or a < 1:
            raise ValueError(f"AgentConfig.num_actions must be a positive int, got {a!r}")
        for name, n in (
            ("denoiser.inner_model", self.denoiser.inner_model.num_actions),
            ("rew_end_model", self.rew_end_model.num_actions),
            ("actor_critic", None if self.actor_critic is None else self.actor_critic.num_actions),
        ):
            if n is not None and n != a:
                raise ValueError(f"AgentConfig: {name}.num_actions={n} disagrees with num_actions={a}")
        self.denoiser = dataclasses.replace(
            self.denoiser, inner_model=dataclasses.replace(self.denoiser.inner_model, num_actions=a)
        )
        self.rew_end_model = dataclasses.replace(self.rew_end_model, num_actions=a)
        self.actor_critic = (
            ActorCriticConfig(num_actions=a)
            if self.actor_critic is None
            else dataclasses.replace(self.actor_critic, num_actions=a)
        )


class Agent(nn.Module):
    def __init__(self, cfg: AgentConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.denoiser = Denoiser(cfg.denoiser)
        self.rew_end_model = RewEndModel(cfg.rew_end_model)
        self.actor_critic = ActorCritic(cfg.actor_critic)

    @property
    def device(self) -> torch.device:
        return self.denoiser.device

    @property
    def num_actions(self) -> int:
        return self.cfg.num_actions


def compile_agent(agent: Agent, mode: str | None = None, **kwargs: Any) -> None:
    """``torch.compile`` what training and imagination call, in place (``nn.Module.compile``), so the
    state-dict keys and checkpoints stay those of the plain modules.

    ``Denoiser`` has no ``forward`` (``compute_loss`` and ``denoise`` call ``inner_model``), so compiling the
    denoiser itself would wrap a ``__call__`` nobody calls: its inner model is compiled instead. The
    reward/end model and the actor-critic are called through ``forward``. ``mode="reduce-overhead"`` adds
    CUDA graphs (``run.compile`` in conf/base/parameters.yml says when)."""
    for module in (agent.denoiser.inner_model, agent.rew_end_model, agent.actor_critic):
        module.compile(mode=mode, **kwargs)


# ----- strict state-dict loading with a readable error ------------------------------------------------


def check_state_dict(module: nn.Module, state_dict: Mapping[str, Tensor], source: str) -> None:
    """Raise ValueError listing missing keys, unexpected keys and shape mismatches (if any)."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    mismatched = sorted(
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in set(expected) & set(state_dict)
        if tuple(state_dict[k].shape) != tuple(expected[k].shape)
    )
    if missing or unexpected or mismatched:
        parts = [f"state dict from {source} does not match {type(module).__name__}:"]
        for title, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", mismatched)):
            if items:
                parts.append(f"  {len(items)} {title}: " + ", ".join(items[:20]) + (" ..." if len(items) > 20 else ""))
        raise ValueError("\n".join(parts))


def load_state_dict_strict(module: nn.Module, state_dict: Mapping[str, Tensor], source: str) -> None:
    check_state_dict(module, state_dict, source)
    module.load_state_dict(state_dict, strict=True)


# ----- config <-> plain data ---------------------------------------------------------------------------

_CONFIG_TYPES: dict[str, type] = {
    c.__name__: c
    for c in (AgentConfig, DenoiserConfig, InnerModelConfig, SigmaDistributionConfig, RewEndModelConfig, ActorCriticConfig)
}
_MODEL_FOR_CONFIG: dict[str, type[nn.Module]] = {
    "AgentConfig": Agent,
    "DenoiserConfig": Denoiser,
    "RewEndModelConfig": RewEndModel,
    "ActorCriticConfig": ActorCritic,
}


def _to_plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: _to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [_to_plain(x) for x in obj]
    return obj


def _from_plain(cls: type, data: Mapping[str, Any]) -> Any:
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        sub = next(
            (t for t in (hints[f.name], *typing.get_args(hints[f.name])) if dataclasses.is_dataclass(t)), None
        )
        if sub is not None and isinstance(value, Mapping):
            value = _from_plain(sub, value)
        elif isinstance(value, list) and typing.get_origin(hints[f.name]) is tuple:
            value = tuple(value)
        kwargs[f.name] = value
    return cls(**kwargs)


def save_checkpoint(path: str | os.PathLike, model: nn.Module, config: Any) -> None:
    """Write {format, config_type, config (plain data), state_dict} to ``path`` atomically (tmp + rename)."""
    name = type(config).__name__
    if name not in _MODEL_FOR_CONFIG:
        raise ValueError(f"save_checkpoint: unsupported config type {name}; expected one of {sorted(_MODEL_FOR_CONFIG)}")
    state_dict = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {"format": CHECKPOINT_FORMAT, "config_type": name, "config": _to_plain(config), "state_dict": state_dict}
    atomic_torch_save(payload, Path(path))


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the model saved by ``save_checkpoint`` and load its weights strictly (clear error otherwise).

    The rebuilt config is available as ``model.cfg``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    payload = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a {CHECKPOINT_FORMAT} checkpoint (for the authors' files use load_authors_checkpoint)")
    name = payload["config_type"]
    if name not in _MODEL_FOR_CONFIG:
        raise ValueError(f"{path}: unknown config type {name!r}")
    config = _from_plain(_CONFIG_TYPES[name], payload["config"])
    model = _MODEL_FOR_CONFIG[name](config)
    load_state_dict_strict(model, payload["state_dict"], str(path))
    return model


def load_authors_checkpoint(
    path_or_state_dict: str | os.PathLike | Mapping[str, Tensor], num_actions: int | None = None
) -> Agent:
    """Build a paper-config Atari agent and load the authors' flat state dict into it strictly.

    ``num_actions`` defaults to the row count of ``actor_critic.actor_linear.weight`` in the file.
    """
    if isinstance(path_or_state_dict, Mapping):
        state_dict, source = path_or_state_dict, "the given state dict"
    else:
        source = str(path_or_state_dict)
        if not Path(source).is_file():
            raise FileNotFoundError(f"authors' checkpoint {source} does not exist")
        state_dict = torch.load(source, map_location="cpu", weights_only=True)
        if not isinstance(state_dict, Mapping):
            raise ValueError(f"{source}: expected a flat state dict, got {type(state_dict).__name__}")
    if num_actions is None:
        key = "actor_critic.actor_linear.weight"
        if key not in state_dict:
            raise ValueError(f"{source}: cannot infer num_actions, key {key!r} is missing")
        num_actions = int(state_dict[key].shape[0])
    agent = Agent(AgentConfig(num_actions=num_actions))
    load_state_dict_strict(agent, state_dict, source)
    return agent
