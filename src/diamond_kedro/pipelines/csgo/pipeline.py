from kedro.pipeline import Pipeline, node

from .nodes import commit_csgo_run, evaluate_csgo, open_csgo_run, train_csgo_denoiser, train_csgo_upsampler

# Tag read by diamond_kedro.hooks: pipelines with these nodes get the run's MLflow run (experiment diamond-csgo).
TRAIN_TAG = "csgo_train"


def create_pipeline(**kwargs) -> Pipeline:
    """One epoch per ``kedro run --pipelines=csgo`` (resumes the run ``csgo_<run.name>``).

    The run object flows in memory through ``run_*`` datasets (catalog: MemoryDataset, copy_mode assign)."""
    return Pipeline(
        [
            node(open_csgo_run, "params:csgo", "run_csgo_opened", name="open_csgo_run"),
            node(train_csgo_denoiser, "run_csgo_opened", "run_csgo_denoiser_trained", name="train_csgo_denoiser"),
            node(train_csgo_upsampler, "run_csgo_denoiser_trained", "run_csgo_upsampler_trained",
                 name="train_csgo_upsampler"),
            node(evaluate_csgo, "run_csgo_upsampler_trained", "run_csgo_evaluated", name="evaluate_csgo"),
            node(commit_csgo_run, "run_csgo_evaluated", "csgo_metrics", name="commit_csgo_run"),
        ],
        tags=[TRAIN_TAG],
    )
