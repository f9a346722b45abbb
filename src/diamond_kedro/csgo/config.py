"""Validated ``csgo:`` parameters (``conf/*/parameters_csgo.yml``), one pydantic model per section.

Defaults are the paper's values (spec §7). Unknown keys are errors and every bound is checked, so a bad
value fails before any work with a message naming it, e.g. ``csgo.denoiser.training.lr: Input should be
greater than 0``. Kept apart from ``diamond_kedro.config`` (the Atari parameters), which ignores ``csgo``.
The run / denoiser / upsampler / evaluate sections are those of every static dataset
(:mod:`diamond_kedro.datasets.config`) with the CS:GO data section and the published upsampling factor
and frame rate; the generic layer knows nothing of CS:GO.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from diamond_kedro.config import _Strict
from diamond_kedro.datasets.config import (
    StaticDenoiserConfig,
    StaticEvaluateConfig,
    StaticRunConfig,
    StaticSigmaDistributionConfig,
    StaticTrainingConfig,
    StaticUpsamplerModelConfig,
)
from diamond_kedro.errors import UserError


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


class CsgoUpsamplerModelConfig(StaticUpsamplerModelConfig):
    upsampling_factor: int = Field(default=5, gt=0)  # a static dataset derives it from its two resolutions


class CsgoUpsamplerConfig(_Strict):
    model: CsgoUpsamplerModelConfig = CsgoUpsamplerModelConfig()
    sigma_distribution: StaticSigmaDistributionConfig = StaticSigmaDistributionConfig()
    training: StaticTrainingConfig = StaticTrainingConfig(batch_size=4)


class CsgoEvaluateConfig(StaticEvaluateConfig):
    video_fps: float = Field(default=16.0, gt=0)  # the dataset is captured at 16 Hz


class CsgoConfig(_Strict):
    """All ``csgo:`` parameters."""

    data: CsgoDataConfig = CsgoDataConfig()
    run: StaticRunConfig = StaticRunConfig()
    denoiser: StaticDenoiserConfig = StaticDenoiserConfig()
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
