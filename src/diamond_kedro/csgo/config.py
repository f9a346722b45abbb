"""Validated ``csgo:`` parameters (``conf/*/parameters_csgo.yml``), one pydantic model per section.

Defaults are the paper's values (spec §7). Unknown keys are errors and every bound is checked, so a bad
value fails before any work with a message naming it, e.g. ``csgo.denoiser.training.lr: Input should be
greater than 0``. Kept apart from ``diamond_kedro.config`` (the Atari parameters), which ignores ``csgo``.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from diamond_kedro.config import DenoiserModelConfig, _Strict, check_device, check_run_name
from diamond_kedro.errors import UserError

log = logging.getLogger(__name__)


@functools.cache  # once per process: the hook and the node both validate the parameters
def _warn_bf16(value: str) -> None:
    log.warning("run.bf16 is deprecated: write run.amp (true | false | auto) instead; bf16: %s is amp: %s (it overrides "
                "run.amp)", value, value)


class CsgoDataConfig(_Strict):
    """Where the published dataset is and where the ingested replay stores go (spec §7.1)."""

    source_dir: str = "data/csgo/raw"  # folder of hdf5_dm_july2021_*_to_*.tar archives and/or *.hdf5 files
    out_dir: str = "data/csgo"  # low_res/{train,test}, full_res/{train,test}, index.json
    test_split_file: str | None = None  # None = the published 500-file list shipped with the package
    frames_per_file: int | None = Field(default=None, gt=0)  # None = any number (the published files have 1000)
    frame_size: tuple[int, int] = (150, 280)  # (H, W) of the published frames
    low_res_size: tuple[int, int] = (30, 56)  # (H, W) of the dynamics model's frames
    on_bad_file: Literal["raise", "skip"] = "raise"  # skip = record the file and its error in index.json
    fsync: bool = True

    @field_validator("frame_size", "low_res_size")
    @classmethod
    def _positive(cls, v: tuple[int, int]) -> tuple[int, int]:
        if min(v) <= 0:
            raise ValueError(f"sizes must be positive (H, W), got {v}")
        return v


class CsgoRunConfig(_Strict):
    name: str = "default"  # the run lives in <root>/csgo_<name>/
    root: str = "data/runs"
    seed: int = 0
    device: str = "auto"
    num_threads: int | None = Field(default=None, gt=0)
    num_epochs: int = Field(default=600, gt=0)  # spec §7.4: num_final_epochs = 600
    # static runs only (spec §7.4; Atari's models are small enough to stay on the device): each model (+ its
    # optimiser state) on the device only while it is used
    offload: bool = True
    # as Atari's run.amp (one setting, utils.precision.resolve_amp): bf16 autocast true | false | auto (CUDA:
    # ~2x less activation memory; CPU: much slower here unless the machine has native bf16). ``bf16: true|false``
    # is a deprecated alias (a one-line warning).
    amp: bool | Literal["auto"] = False
    # as Atari's run.compile: torch.compile the denoisers' inner models in place (true: its default mode)
    compile: bool | Literal["reduce-overhead", "max-autotune"] = False

    @model_validator(mode="before")
    @classmethod
    def _bf16_alias(cls, data: Any) -> Any:
        """``run.bf16`` (before run.amp existed) is ``run.amp``, and wins over it: conf/base now sets ``amp``, so a
        ``bf16`` comes from a user's older profile that means it."""
        if isinstance(data, dict) and "bf16" in data:
            data = dict(data)
            data["amp"] = bf16 = data.pop("bf16")
            _warn_bf16(repr(bf16))
        return data

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        return check_device(v)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_run_name(v)


class CsgoModelConfig(DenoiserModelConfig):
    """The Atari denoiser's model section (same fields and checks) with the CS:GO dynamics defaults."""

    cond_channels: int = Field(default=2048, gt=0)
    channels: list[int] = [128, 256, 512, 1024]
    depths: list[int] = [2, 2, 2, 2]
    attn_depths: list[bool] = [False, False, True, True]
    sigma_offset_noise: float = Field(default=0.1, ge=0)
    num_autoregressive_steps: int = Field(default=4, ge=0)


class CsgoDenoiserModelConfig(CsgoModelConfig):
    noise_previous_obs: bool = True  # spec §7.3: noise-augment the 4 conditioning frames


class CsgoUpsamplerModelConfig(CsgoModelConfig):
    channels: list[int] = [64, 64, 128, 256]
    attn_depths: list[bool] = [False, False, False, True]
    num_steps_conditioning: int = Field(default=1, gt=0)
    num_autoregressive_steps: int = Field(default=1, ge=0)
    upsampling_factor: int = Field(default=5, gt=0)


class CsgoSigmaDistributionConfig(_Strict):
    loc: float = -1.2  # spec §7.3 (Atari: -0.4)
    scale: float = Field(default=1.2, gt=0)
    sigma_min: float = Field(default=0.002, gt=0)
    sigma_max: float = Field(default=20.0, gt=0)


class CsgoTrainingConfig(_Strict):
    """One model's optimisation (spec §7.4)."""

    batch_size: int = Field(default=16, gt=0)
    grad_acc_steps: int = Field(default=8, gt=0)
    steps_per_epoch: int = Field(default=400, ge=0)  # optimiser steps (also in epoch 1)
    lr: float = Field(default=1e-4, gt=0)
    weight_decay: float = Field(default=1e-2, ge=0)
    eps: float = Field(default=1e-8, gt=0)
    warmup_steps: int = Field(default=100, ge=0)
    max_grad_norm: float = Field(default=10.0, gt=0)


class CsgoDenoiserConfig(_Strict):
    model: CsgoDenoiserModelConfig = CsgoDenoiserModelConfig()
    sigma_distribution: CsgoSigmaDistributionConfig = CsgoSigmaDistributionConfig()
    training: CsgoTrainingConfig = CsgoTrainingConfig()


class CsgoUpsamplerConfig(_Strict):
    model: CsgoUpsamplerModelConfig = CsgoUpsamplerModelConfig()
    sigma_distribution: CsgoSigmaDistributionConfig = CsgoSigmaDistributionConfig()
    training: CsgoTrainingConfig = CsgoTrainingConfig(batch_size=4)


class CsgoEvaluateConfig(_Strict):
    every: int = Field(default=20, gt=0)  # test losses (and the imagination video) every N epochs and at the last
    test_batch_size: int | None = Field(default=None, gt=0)  # None = each model's training batch size
    max_test_batches: int | None = Field(default=None, gt=0)  # None = the whole test set (spec §7.4)
    video: bool = True
    video_episode: int = Field(default=0, ge=0)  # test episode whose context and recorded actions drive the video
    video_horizon: int = Field(default=32, gt=0)
    video_fps: float = Field(default=16.0, gt=0)  # the dataset is captured at 16 Hz
    sampler_preset: Literal["fast", "higher_quality"] = "fast"
    # PSNR/SSIM of the video's imagined frames h steps after the context vs the real ones and vs copying the
    # last context frame (horizons beyond video_horizon are left out)
    fidelity_horizons: list[int] = [1, 5, 15]


class CsgoConfig(_Strict):
    """All ``csgo:`` parameters."""

    data: CsgoDataConfig = CsgoDataConfig()
    run: CsgoRunConfig = CsgoRunConfig()
    denoiser: CsgoDenoiserConfig = CsgoDenoiserConfig()
    upsampler: CsgoUpsamplerConfig = CsgoUpsamplerConfig()
    evaluate: CsgoEvaluateConfig = CsgoEvaluateConfig()

    @model_validator(mode="after")
    def _consistent(self) -> "CsgoConfig":
        (h, w), (lh, lw) = self.data.frame_size, self.data.low_res_size
        f = self.upsampler.model.upsampling_factor
        if (lh * f, lw * f) != (h, w):
            raise ValueError(
                f"data.low_res_size {tuple(self.data.low_res_size)} x upsampler.model.upsampling_factor {f} "
                f"must equal data.frame_size {tuple(self.data.frame_size)}"
            )
        return self


    # the interface the run reads (StaticWorldModelConfig has the same)
    @property
    def dataset_dir(self) -> Path:
        return Path(self.data.out_dir)

    @property
    def run_key(self) -> str:
        return f"csgo_{self.run.name}"

    @property
    def report_kind(self) -> str:
        return "csgo"

    @property
    def upsampling_factor(self) -> int | None:
        return self.upsampler.model.upsampling_factor

    @property
    def video_fps(self) -> float:
        return self.evaluate.video_fps


class CsgoConfigError(UserError, ValueError):
    """A ``csgo`` parameter is missing or out of range; the message names each offending parameter."""


def parse_csgo_config(params: dict[str, Any] | None) -> CsgoConfig:
    """Validate Kedro's ``params:csgo``; raise ``CsgoConfigError`` naming every bad parameter as ``csgo.…``."""
    try:
        return CsgoConfig.model_validate(params or {})
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            where = ".".join(["csgo", *(str(p) for p in err["loc"])])
            lines.append(f"  {where}: {err['msg']} (got {err.get('input')!r})")
        raise CsgoConfigError("invalid csgo parameters:\n" + "\n".join(lines)) from None
