"""Validated run configuration: the Kedro parameter files, as one typed object.

Pydantic models mirror ``conf/base/parameters*.yml`` one to one. Unknown keys are errors (a typo must not
silently fall back to a default) and every bound is checked, so a bad value fails before any work with a
message that names the parameter, e.g. ``denoiser.training.lr: Input should be greater than 0``.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from diamond_kedro.errors import UserError

PositiveInt = Field(gt=0)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


def check_device(v: str) -> str:
    if v != "auto" and not (v == "cpu" or v.startswith("cuda") or v == "mps"):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda[:N]' or 'mps', got {v!r}")
    return v


_RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def check_run_name(v: str) -> str:
    """``run.name`` names a folder under ``run.root`` and an MLflow run: letters, digits, '.', '_', '-' only
    (no '/', '..' or whitespace, which would escape ``run.root``; no quote, which breaks MLflow's filters)."""
    if not _RUN_NAME.match(v) or ".." in v or len(v) > 100:
        raise ValueError(
            "must be 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit, without '..' "
            "(it names the run's folder and MLflow run)"
        )
    return v


class _RunChecks(_Strict):
    """The checks every run section shares (Atari's ``run`` and the static family's): device and name."""

    @field_validator("device", check_fields=False)
    @classmethod
    def _device(cls, v: str) -> str:
        return check_device(v)

    @field_validator("name", check_fields=False)
    @classmethod
    def _name(cls, v: str) -> str:
        return check_run_name(v)


class RunConfig(_RunChecks):
    name: str = "default"
    root: str = "data/runs"
    seed: int = 0
    device: str = "auto"
    num_threads: int | None = Field(default=None, gt=0)
    tune_malloc: bool = True
    compile: bool | Literal["reduce-overhead", "max-autotune"] = False  # true: torch.compile's default mode
    amp: bool | Literal["auto"] = "auto"  # bf16 autocast: true | false | auto (per machine, utils.precision)
    total_env_steps: int = Field(default=100_000, gt=0)
    num_final_epochs: int = Field(default=50, ge=0)
    save_agent_every: int = Field(default=5, gt=0)
    num_agents_to_keep: int = Field(default=11, gt=0)


class EnvConfig(_Strict):
    game: str = "Breakout"
    num_envs: int = Field(default=1, gt=0)
    noop_max: int = Field(default=30, ge=1)
    frame_skip: int = Field(default=4, gt=0)
    size: int = Field(default=64, gt=0)
    max_num_frames_per_episode: int = Field(default=108_000, gt=0)

    @field_validator("game")
    @classmethod
    def _game(cls, v: str) -> str:
        from diamond_kedro.envs.atari import resolve_game  # raises ValueError listing the 26 games

        resolve_game(v)
        return v


class FirstEpochConfig(_Strict):
    min_steps: int = Field(default=5000, gt=0)
    max_steps: int = Field(default=10000, gt=0)
    threshold_rew: int = Field(default=10, ge=0)

    @model_validator(mode="after")
    def _order(self) -> "FirstEpochConfig":
        if self.max_steps < self.min_steps:
            raise ValueError(f"max_steps ({self.max_steps}) must be >= min_steps ({self.min_steps})")
        return self


class CollectConfig(_Strict):
    epsilon: float = Field(default=0.01, ge=0.0, le=1.0)
    steps_per_epoch: int = Field(default=100, gt=0)
    first_epoch: FirstEpochConfig = FirstEpochConfig()


class OptimConfig(_Strict):
    """Optimisation settings shared by the three components (spec §6.2)."""

    batch_size: int = Field(default=32, gt=0)
    steps_first_epoch: int = Field(ge=0)
    steps_per_epoch: int = Field(ge=0)
    lr: float = Field(default=1e-4, gt=0)
    weight_decay: float = Field(default=1e-2, ge=0)
    eps: float = Field(default=1e-8, gt=0)
    warmup_steps: int = Field(default=100, ge=0)
    max_grad_norm: float = Field(gt=0)
    sample_weights: list[float] | None = [0.1, 0.1, 0.1, 0.7]

    @field_validator("sample_weights")
    @classmethod
    def _weights(cls, v: list[float] | None) -> list[float] | None:
        if v is not None:
            if any(w < 0 or w > 1 for w in v) or abs(sum(v) - 1.0) > 1e-6:
                raise ValueError(f"sample_weights must lie in [0, 1] and sum to 1, got {v}")
        return v


class UNetConfig(_Strict):
    cond_channels: int = Field(gt=0)
    channels: list[int]
    depths: list[int]
    attn_depths: list[bool]

    @model_validator(mode="after")
    def _levels(self) -> "UNetConfig":
        if not (len(self.channels) == len(self.depths) == len(self.attn_depths)) or not self.channels:
            raise ValueError("channels, depths and attn_depths must be non-empty lists of the same length")
        if any(c <= 0 for c in self.channels) or any(d <= 0 for d in self.depths):
            raise ValueError("channels and depths must be positive")
        return self


class DenoiserModelConfig(UNetConfig):
    num_steps_conditioning: int = Field(default=4, gt=0)
    sigma_data: float = Field(default=0.5, gt=0)
    sigma_offset_noise: float = Field(default=0.3, ge=0)
    num_autoregressive_steps: int = Field(default=1, ge=0)


class SigmaDistributionConfig(_Strict):
    loc: float = -0.4
    scale: float = Field(default=1.2, gt=0)
    sigma_min: float = Field(default=0.002, gt=0)
    sigma_max: float = Field(default=20.0, gt=0)


class SamplerConfig(_Strict):
    num_steps_denoising: int = Field(default=3, gt=0)
    sigma_min: float = Field(default=0.002, gt=0)
    sigma_max: float = Field(default=5.0, gt=0)
    rho: float = Field(default=7, gt=0)
    order: Literal[1, 2] = 1


class DenoiserConfig(_Strict):
    model: DenoiserModelConfig
    sigma_distribution: SigmaDistributionConfig = SigmaDistributionConfig()
    sampler: SamplerConfig = SamplerConfig()
    training: OptimConfig


class RewEndModelModelConfig(UNetConfig):
    lstm_dim: int = Field(default=512, gt=0)


class RewEndTrainingConfig(OptimConfig):
    seq_length: int = Field(default=19, ge=2)


class RewEndConfig(_Strict):
    model: RewEndModelModelConfig
    training: RewEndTrainingConfig


class ActorCriticModelConfig(_Strict):
    channels: list[int] = [32, 32, 64, 64]
    down: list[int] = [1, 1, 1, 1]
    lstm_dim: int = Field(default=512, gt=0)


class ActorCriticTrainingConfig(OptimConfig):
    horizon: int = Field(default=15, gt=0)
    backup_every: int = Field(default=15, gt=0)
    gamma: float = Field(default=0.985, gt=0, le=1)
    lambda_: float = Field(default=0.95, ge=0, le=1)
    weight_value_loss: float = Field(default=1.0, ge=0)
    weight_entropy_loss: float = Field(default=0.001, ge=0)
    num_batches_to_preload: int = Field(default=256, gt=0)


class ActorCriticConfig(_Strict):
    model: ActorCriticModelConfig = ActorCriticModelConfig()
    training: ActorCriticTrainingConfig


class EvaluateConfig(_Strict):
    every: int = Field(default=10, gt=0)
    num_episodes: int = Field(default=4, ge=0)
    num_final_episodes: int = Field(default=100, ge=0)
    test_batch_size: int = Field(default=32, gt=0)
    video_horizon: int = Field(default=50, gt=0)
    # World-model fidelity (evaluation/fidelity.py): open-loop imagination from real test contexts with the
    # recorded actions, PSNR/SSIM at each horizon vs copy-last-frame, reward/end accuracy. 0 contexts = off.
    fidelity_horizons: list[int] = [1, 15, 50]  # 15 = imagination horizon H; 50 = a long open-loop test
    fidelity_num_contexts: int = Field(default=64, ge=0)

    @field_validator("fidelity_horizons")
    @classmethod
    def _horizons(cls, v: list[int]) -> list[int]:
        if not v or any(h < 1 for h in v):
            raise ValueError(f"fidelity_horizons must be a non-empty list of positive integers, got {v}")
        return v


class DiamondConfig(_Strict):
    """All parameters of an Atari run (``conf/<env>/parameters*.yml``)."""

    run: RunConfig = RunConfig()
    env: EnvConfig = EnvConfig()
    collect: CollectConfig = CollectConfig()
    denoiser: DenoiserConfig
    rew_end_model: RewEndConfig
    actor_critic: ActorCriticConfig
    evaluate: EvaluateConfig = EvaluateConfig()

    @model_validator(mode="after")
    def _consistent(self) -> "DiamondConfig":
        t = self.actor_critic.training
        if t.backup_every > t.horizon:
            raise ValueError("actor_critic.training.backup_every must be <= horizon")
        return self


class ConfigError(UserError, ValueError):
    """A parameter is missing or out of range; the message names each offending parameter."""


# Keys Kedro (or the CS:GO, static world-model and report pipelines) may add beside the Atari sections; they are validated elsewhere.
_FOREIGN_SECTIONS = ("csgo", "report", "static_world_model")


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_config(parameters: dict[str, Any]) -> DiamondConfig:
    """Validate Kedro's ``parameters`` dict; raise ``ConfigError`` naming every bad parameter."""
    data = {k: v for k, v in parameters.items() if k not in _FOREIGN_SECTIONS}
    try:
        return DiamondConfig.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "<parameters>"
            got = "" if err["type"] == "missing" else f" (got {_short(err.get('input'))})"
            lines.append(f"  {where}: {err['msg']}{got}")
        raise ConfigError("invalid parameters:\n" + "\n".join(lines)) from None
