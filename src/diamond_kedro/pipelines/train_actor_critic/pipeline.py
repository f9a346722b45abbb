from kedro.pipeline import Pipeline, node

from diamond_kedro.pipelines.run_io import RUN_IN, RUN_OUT, chain

from .nodes import train_actor_critic


def fragment() -> Pipeline:
    return Pipeline([node(train_actor_critic, inputs=RUN_IN, outputs=RUN_OUT, name="train_actor_critic")])


def create_pipeline(**kwargs) -> Pipeline:
    """Standalone: open the run, `train_actor_critic` once more on the current data, commit as an epoch."""
    return chain(("actor_critic_trained", fragment()))
