"""The `static_world_model` pipeline: one epoch of world-model training on an ingested gameplay dataset."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
