"""The models of a run from its validated config: one place, below the training runs and play.

``training.run`` / ``training.csgo_run`` build the models they train here, and ``play`` rebuilds the
models of a run folder here from the config saved in its state file; neither imports the other for it.
Also here: the tag a static-family (CS:GO, ``static_world_model``) run state carries, which both the run
that writes it and play, which recognises it, read.
"""

from __future__ import annotations

from typing import Any

from diamond_kedro.config import DiamondConfig
from diamond_kedro.csgo.config import CsgoConfig
from diamond_kedro.datasets.config import StaticWorldModelConfig
from diamond_kedro.datasets.csgo_hdf5 import CSGO_ACTION_DIM
from diamond_kedro.datasets.writer import ActionSpec
from diamond_kedro.models.actor_critic import ActorCriticConfig
from diamond_kedro.models.agent import Agent, AgentConfig
from diamond_kedro.models.denoiser import Denoiser, DenoiserConfig, SigmaDistributionConfig
from diamond_kedro.models.diffusion_sampler import DiffusionSamplerConfig
from diamond_kedro.models.rew_end_model import RewEndModelConfig
from diamond_kedro.models.unet import InnerModelConfig

CSGO_STATE_FORMAT = "diamond-kedro-csgo-run"  # ``format`` of a static-family run's checkpoints/state.pt
CSGO_ACTION = ActionSpec("multi_hot", CSGO_ACTION_DIM)  # the CS:GO dataset's action: a 51-dim multi-hot vector


def denoiser_config(section: Any, inner_model: dict[str, Any] | None = None, **extra: Any) -> DenoiserConfig:
    """A ``DenoiserConfig`` from a validated config section with ``.model`` and ``.sigma_distribution``
    (Atari denoiser, CS:GO dynamics and upsampler). ``inner_model`` / ``extra``: the fields only some of
    them set (actions, upsampling, ...), passed to ``InnerModelConfig`` / ``DenoiserConfig``."""
    m = section.model
    return DenoiserConfig(
        inner_model=InnerModelConfig(
            num_steps_conditioning=m.num_steps_conditioning,
            cond_channels=m.cond_channels,
            depths=list(m.depths),
            channels=list(m.channels),
            attn_depths=list(m.attn_depths),
            **(inner_model or {}),
        ),
        sigma_data=m.sigma_data,
        sigma_offset_noise=m.sigma_offset_noise,
        num_autoregressive_steps=m.num_autoregressive_steps,
        sigma_distribution=SigmaDistributionConfig(**section.sigma_distribution.model_dump()),
        **extra,
    )


def build_agent(cfg: DiamondConfig, num_actions: int) -> Agent:
    """The three models from the validated parameters (``conf/*/parameters_train_*.yml``)."""
    r, a = cfg.rew_end_model.model, cfg.actor_critic.model
    denoiser = denoiser_config(cfg.denoiser)
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


def build_models(cfg: CsgoConfig | StaticWorldModelConfig, action: ActionSpec | None = None) -> dict[str, Denoiser]:
    """The dynamics denoiser and, when the config has an upsampling factor, the upsampler (spec §7.3).
    ``action``: the dataset's action spec (default: the CS:GO 51-dim multi-hot vector)."""
    d, u = cfg.denoiser, cfg.upsampler
    action = action or CSGO_ACTION
    denoiser = denoiser_config(
        d, inner_model={"num_actions": action.dim, "has_noise_cond_emb": True}, noise_previous_obs=d.model.noise_previous_obs
    )
    models = {"denoiser": Denoiser(denoiser)}
    if cfg.upsampling_factor is not None:
        upsampler = denoiser_config(
            u,
            # the authors' layout: the noise-conditioning embedding exists and always receives 0
            inner_model={"is_upsampler": True, "has_noise_cond_emb": True},
            upsampling_factor=cfg.upsampling_factor,
        )
        models["upsampler"] = Denoiser(upsampler)
    return models
