from kedro.pipeline import Pipeline

from diamond_kedro.pipelines.atari_epoch.pipeline import phase_pipeline


def create_pipeline(**kwargs) -> Pipeline:
    """Standalone: `train_denoiser` once more on the run as it stands, committed as an epoch (node `train_denoiser` and
    `commit_epoch` of `atari_epoch`)."""
    return phase_pipeline("train_denoiser")
