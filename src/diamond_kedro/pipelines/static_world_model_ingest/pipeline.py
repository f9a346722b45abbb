from kedro.pipeline import Pipeline, node

from .nodes import ingest_static_dataset


def create_pipeline(**kwargs) -> Pipeline:
    """``kedro run --pipelines=static_world_model_ingest``: resumable; files already ingested are skipped."""
    return Pipeline([node(ingest_static_dataset, "params:static_world_model", ["static_dataset", "static_world_model_ingest_metrics"],
                          name="ingest_static_dataset")])
