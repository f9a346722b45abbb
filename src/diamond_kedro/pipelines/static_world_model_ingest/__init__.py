"""The `static_world_model_ingest` pipeline: recorded gameplay (CS:GO HDF5, Minari, video + actions) ->
replay stores."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
