from kedro.pipeline import Pipeline, node

from diamond_kedro.pipelines.run_io import RUN_IN, RUN_OUT, chain

from .nodes import collect_experience


def fragment() -> Pipeline:
    return Pipeline([node(collect_experience, inputs=RUN_IN, outputs=RUN_OUT, name="collect")])


def create_pipeline(**kwargs) -> Pipeline:
    """An epoch that only collects (and commits): grows the replay store without training."""
    return chain(("collected", fragment()))
