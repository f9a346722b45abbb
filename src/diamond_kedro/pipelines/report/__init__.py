"""The `report` pipeline: our tracked runs vs the paper (per-game table, aggregates, plots)."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
