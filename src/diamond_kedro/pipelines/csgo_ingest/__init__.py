"""The `csgo_ingest` pipeline: the published CS:GO dataset -> low/full-resolution replay stores (spec §7.1)."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
