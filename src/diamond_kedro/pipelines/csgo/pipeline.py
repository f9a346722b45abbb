from kedro.pipeline import Pipeline

from diamond_kedro.io.run_session import CSGO_TAG
from diamond_kedro.pipelines import static_epoch

# Tag read by diamond_kedro.hooks: pipelines with these nodes train a CS:GO run (MLflow experiment diamond-csgo).
TRAIN_TAG = CSGO_TAG


def create_pipeline(**kwargs) -> Pipeline:
    """One epoch per ``kedro run --pipelines=csgo`` (resumes the run ``csgo_<run.name>``) on ``csgo_dataset``
    (what ``csgo_ingest`` wrote): the world-model training pipeline, evaluation, commit (``static_epoch``)."""
    return static_epoch.create_pipeline("csgo", "csgo_dataset", TRAIN_TAG)
