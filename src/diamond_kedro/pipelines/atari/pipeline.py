from kedro.pipeline import Pipeline, node

from .nodes import train_run


def create_pipeline(**kwargs) -> Pipeline:
    """The whole run in one ``kedro run`` (``atari_epoch`` repeated until the run is over)."""
    return Pipeline([node(train_run, inputs="parameters", outputs="final_metrics", name="train_run")])
