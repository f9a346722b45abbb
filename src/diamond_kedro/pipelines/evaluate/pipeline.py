from kedro.pipeline import Pipeline, node

from diamond_kedro.pipelines.run_io import RUN_IN, RUN_OUT, chain

from .nodes import evaluate


def fragment() -> Pipeline:
    return Pipeline([node(evaluate, inputs=RUN_IN, outputs=RUN_OUT, name="evaluate")])


def create_pipeline(**kwargs) -> Pipeline:
    """Standalone: open the run, `evaluate` once more on the current data, commit as an epoch."""
    return chain(("evaluated", fragment()))
