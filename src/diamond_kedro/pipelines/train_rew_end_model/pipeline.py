from kedro.pipeline import Pipeline, node

from diamond_kedro.pipelines.run_io import RUN_IN, RUN_OUT, chain

from .nodes import train_rew_end_model


def fragment() -> Pipeline:
    return Pipeline([node(train_rew_end_model, inputs=RUN_IN, outputs=RUN_OUT, name="train_rew_end_model")])


def create_pipeline(**kwargs) -> Pipeline:
    """Standalone: open the run, `train_rew_end_model` once more on the current data, commit as an epoch."""
    return chain(("rew_end_model_trained", fragment()))
