from kedro.pipeline import Pipeline

from diamond_kedro.io.run_session import STATIC_TAG
from diamond_kedro.pipelines import static_epoch

# Tag read by diamond_kedro.hooks: the run's MLflow run (experiment diamond-<dataset.name>).
TRAIN_TAG = STATIC_TAG


def create_pipeline(**kwargs) -> Pipeline:
    """One epoch per ``kedro run --pipelines=static_world_model`` (resumes ``<dataset.name>_<run.name>``) on
    ``static_dataset`` (what ``static_world_model_ingest`` wrote): dynamics denoiser, upsampler (passed through
    without one), evaluation, commit -- the same nodes as ``csgo`` (``static_epoch``) and as Atari's
    ``train_denoiser``."""
    return static_epoch.create_pipeline("static_world_model", "static_dataset", TRAIN_TAG)
