from kedro.pipeline import Pipeline

from diamond_kedro.pipelines.atari_epoch.pipeline import phase_pipeline


def create_pipeline(**kwargs) -> Pipeline:
    """Standalone: `train_actor_critic` once more on the run as it stands, committed as an epoch (node `train_actor_critic` and
    `commit_epoch` of `atari_epoch`)."""
    return phase_pipeline("train_actor_critic")
