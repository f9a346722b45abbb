"""The `csgo` pipeline: one epoch of CS:GO world-model training (dynamics denoiser, then upsampler)."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
