"""Validated ``static_world_model:`` parameters (``conf/*/parameters_static_world_model.yml``).

The family of the CS:GO world model for any recorded gameplay: a ``dataset`` section (which source, where,
which resolutions, which actions, which split) and the ``run`` / ``denoiser`` / ``upsampler`` / ``evaluate``
sections defined here, which the CS:GO config (:mod:`diamond_kedro.csgo.config`) builds on. Unknown keys are errors,
every bound is checked, and a bad value fails before any work naming it as ``static_world_model.…``.

The upsampler's factor is derived from the two resolutions (``frame_size / low_res_size``, one integer for
both axes); ``low_res_size: null`` trains the dynamics model alone, at ``frame_size``.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from diamond_kedro.config import DenoiserModelConfig, SigmaDistributionConfig, _RunChecks, _short, _Strict
from diamond_kedro.errors import UserError

log = logging.getLogger(__name__)


@functools.cache  # once per process: the hook and the node both validate the parameters
def _warn_bf16(value: str) -> None:
    log.warning("run.bf16 is deprecated: write run.amp (true | false | auto) instead; bf16: %s is amp: %s (it overrides "
                "run.amp)", value, value)

PARAMS_KEY = "static_world_model"


class VideoOptions(_Strict):
    """``dataset.kind: video`` (see :mod:`diamond_kedro.datasets.video`)."""

    actions_file: str | None = None  # one table for all videos; null = a sidecar <video stem>.csv/.parquet each
    action_columns: list[str] = ["action"]
    file_column: str = "file"  # in actions_file: the video of each row (file name or path under dataset.path)
    frame_column: str | None = "frame"  # optional frame index column (rows are ordered by it)
    episode_column: str | None = None  # null = one episode per video
    reward_column: str = "reward"  # optional columns, stored when present
    terminated_column: str = "terminated"
    truncated_column: str = "truncated"


class MinariOptions(_Strict):
    observation_key: str | None = None  # for Dict observation spaces: the image entry


class CsgoHdf5Options(_Strict):
    frames_per_file: int | None = Field(default=None, gt=0)  # null = any number of frames per file
    action_dim: int = Field(default=51, gt=0)  # width of frame_<i>_y
    # the largest (H, W) a file may declare for its frames: checked before anything is allocated
    max_frame_size: tuple[int, int] = (2160, 3840)

    @field_validator("max_frame_size")
    @classmethod
    def _positive(cls, v: tuple[int, int]) -> tuple[int, int]:
        if min(v) <= 0:
            raise ValueError(f"sizes must be positive (H, W), got {v}")
        return v


class DatasetConfig(_Strict):
    """Where the gameplay is, what it becomes (frames, actions, split) and where the stores go."""

    name: str = Field(default="mygame", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # run folder <name>_<run.name>
    kind: Literal["csgo_hdf5", "minari", "video"] = "video"
    path: str = "data/mygame/raw"  # a folder of videos+tables / of HDF5 files or .tar / a Minari dataset folder
    out_dir: str | None = None  # null = data/static/<name>
    frame_size: tuple[int, int] = (64, 64)  # (H, W) stored; the upsampler's output when low_res_size is set
    low_res_size: tuple[int, int] | None = None  # (H, W) of the dynamics model; null = no upsampler
    resize: Literal["pad", "stretch"] = "pad"  # pad: aspect kept, black bars; stretch: each axis on its own
    action_kind: Literal["auto", "discrete", "multi_hot", "continuous"] = "auto"
    num_actions: int | None = Field(default=None, gt=0)  # discrete: number of ids (null = from the data)
    # share of episodes held out (evenly spaced by name); a dataset of ONE episode (one video) holds out its
    # last test_fraction of frames instead (datasets.writer.time_split_cut)
    test_fraction: float = Field(default=0.1, ge=0, lt=1)
    test_split_file: str | None = None  # a list of file / episode names instead of test_fraction
    fps: float = Field(default=15.0, gt=0)  # the recording's frame rate: videos are written at it
    on_bad_file: Literal["raise", "skip"] = "raise"  # skip = record the file and its error in index.json
    fsync: bool = True
    video: VideoOptions = VideoOptions()
    minari: MinariOptions = MinariOptions()
    csgo_hdf5: CsgoHdf5Options = CsgoHdf5Options()

    @field_validator("frame_size", "low_res_size")
    @classmethod
    def _positive(cls, v: tuple[int, int] | None) -> tuple[int, int] | None:
        if v is not None and min(v) <= 0:
            raise ValueError(f"sizes must be positive (H, W), got {v}")
        return v

    @field_validator("name")
    @classmethod
    def _not_atari(cls, v: str) -> str:
        if v.lower() == "atari":
            raise ValueError("'atari' is the Atari runs' MLflow experiment; choose another name")
        return v

    @model_validator(mode="after")
    def _factor(self) -> "DatasetConfig":
        if self.low_res_size is not None:
            (h, w), (lh, lw) = self.frame_size, self.low_res_size
            if h % lh or w % lw or h // lh != w // lw or h // lh < 2:
                raise ValueError(
                    f"frame_size {tuple(self.frame_size)} must be low_res_size {tuple(self.low_res_size)} times one "
                    "integer factor >= 2 on both axes (the upsampler's factor), e.g. [150, 280] and [30, 56]"
                )
        return self

    @property
    def store_dir(self) -> Path:
        return Path(self.out_dir) if self.out_dir else Path("data/static") / self.name

    @property
    def upsampling_factor(self) -> int | None:
        return None if self.low_res_size is None else self.frame_size[0] // self.low_res_size[0]


class StaticRunConfig(_RunChecks):
    name: str = "default"  # the run lives in <root>/<dataset name>_<name>/ (CS:GO: csgo_<name>)
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


class StaticModelConfig(DenoiserModelConfig):
    """The Atari denoiser's model section (same fields and checks) with the CS:GO dynamics model's defaults."""

    cond_channels: int = Field(default=2048, gt=0)
    channels: list[int] = [128, 256, 512, 1024]
    depths: list[int] = [2, 2, 2, 2]
    attn_depths: list[bool] = [False, False, True, True]
    sigma_offset_noise: float = Field(default=0.1, ge=0)
    num_autoregressive_steps: int = Field(default=4, ge=0)


class StaticDenoiserModelConfig(StaticModelConfig):
    noise_previous_obs: bool = True  # spec §7.3: noise-augment the 4 conditioning frames


class StaticSigmaDistributionConfig(SigmaDistributionConfig):
    """The Atari training-noise distribution (same fields and checks) with the CS:GO models' centre."""

    loc: float = -1.2  # spec §7.3 (Atari: -0.4)


class StaticTrainingConfig(_Strict):
    """One model's optimisation (spec §7.4)."""

    batch_size: int = Field(default=16, gt=0)
    grad_acc_steps: int = Field(default=8, gt=0)
    steps_per_epoch: int = Field(default=400, ge=0)  # optimiser steps (also in epoch 1)
    lr: float = Field(default=1e-4, gt=0)
    weight_decay: float = Field(default=1e-2, ge=0)
    eps: float = Field(default=1e-8, gt=0)
    warmup_steps: int = Field(default=100, ge=0)
    max_grad_norm: float = Field(default=10.0, gt=0)


class StaticDenoiserConfig(_Strict):
    model: StaticDenoiserModelConfig = StaticDenoiserModelConfig()
    sigma_distribution: StaticSigmaDistributionConfig = StaticSigmaDistributionConfig()
    training: StaticTrainingConfig = StaticTrainingConfig()


class StaticEvaluateConfig(_Strict):
    every: int = Field(default=20, gt=0)  # test losses (and the imagination video) every N epochs and at the last
    test_batch_size: int | None = Field(default=None, gt=0)  # None = each model's training batch size
    max_test_batches: int | None = Field(default=None, gt=0)  # None = the whole test set (spec §7.4)
    video: bool = True
    video_episode: int = Field(default=0, ge=0)  # test episode whose context and recorded actions drive the video
    video_horizon: int = Field(default=32, gt=0)
    video_fps: float | None = Field(default=None, gt=0)  # null = dataset.fps
    sampler_preset: Literal["fast", "higher_quality"] = "fast"
    # PSNR/SSIM of the video's imagined frames h steps after the context vs the real ones and vs copying the
    # last context frame (horizons beyond video_horizon are left out)
    fidelity_horizons: list[int] = [1, 5, 15]


class StaticUpsamplerModelConfig(StaticModelConfig):
    """The CS:GO upsampler's model section without ``upsampling_factor`` (derived from the resolutions)."""

    channels: list[int] = [64, 64, 128, 256]
    attn_depths: list[bool] = [False, False, False, True]
    num_steps_conditioning: int = Field(default=1, gt=0)
    num_autoregressive_steps: int = Field(default=1, ge=0)


class StaticUpsamplerConfig(_Strict):
    model: StaticUpsamplerModelConfig = StaticUpsamplerModelConfig()
    sigma_distribution: StaticSigmaDistributionConfig = StaticSigmaDistributionConfig()
    training: StaticTrainingConfig = StaticTrainingConfig(batch_size=4)


class StaticWorldModelConfig(_Strict):
    """All ``static_world_model:`` parameters."""

    dataset: DatasetConfig = DatasetConfig()
    run: StaticRunConfig = StaticRunConfig(num_epochs=100)
    denoiser: StaticDenoiserConfig = StaticDenoiserConfig()
    upsampler: StaticUpsamplerConfig = StaticUpsamplerConfig()
    evaluate: StaticEvaluateConfig = StaticEvaluateConfig()

    # the interface the run reads (CsgoConfig has the same)
    @property
    def dataset_dir(self) -> Path:
        return self.dataset.store_dir

    @property
    def run_key(self) -> str:
        return f"{self.dataset.name}_{self.run.name}"

    @property
    def report_kind(self) -> str:
        return self.dataset.name

    @property
    def upsampling_factor(self) -> int | None:
        return self.dataset.upsampling_factor

    @property
    def video_fps(self) -> float:
        return self.evaluate.video_fps or self.dataset.fps


class StaticWorldModelConfigError(UserError, ValueError):
    """A ``static_world_model`` parameter is missing or out of range; the message names each one."""


def parse_static_config(params: dict[str, Any] | None) -> StaticWorldModelConfig:
    """Validate Kedro's ``params:static_world_model``; raise naming every bad parameter."""
    try:
        return StaticWorldModelConfig.model_validate(params or {})
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            where = ".".join([PARAMS_KEY, *(str(p) for p in err["loc"])])
            got = "" if err["type"] == "missing" else f" (got {_short(err.get('input'))})"
            lines.append(f"  {where}: {err['msg']}{got}")
        raise StaticWorldModelConfigError(f"invalid {PARAMS_KEY} parameters:\n" + "\n".join(lines)) from None
