from kedro.pipeline import Pipeline, node

from .nodes import ingest_csgo


def create_pipeline(**kwargs) -> Pipeline:
    """``kedro run --pipelines=csgo_ingest``: resumable; files already ingested are skipped."""
    return Pipeline([node(ingest_csgo, "params:csgo", ["csgo_dataset", "csgo_ingest_metrics"], name="ingest_csgo")])
