from kedro.pipeline import Pipeline, node

from diamond_kedro.pipelines.run_io import RUN_IN, RUN_OUT, chain

from .nodes import train_denoiser


def fragment() -> Pipeline:
    return Pipeline([node(train_denoiser, inputs=RUN_IN, outputs=RUN_OUT, name="train_denoiser")])


def create_pipeline(**kwargs) -> Pipeline:
    """Standalone: open the run, `train_denoiser` once more on the current data, commit as an epoch."""
    return chain(("denoiser_trained", fragment()))
