from kedro.pipeline import Pipeline, node

from diamond_kedro.pipelines.csgo.nodes import commit_csgo_run, evaluate_csgo, train_csgo_denoiser, train_csgo_upsampler

from .nodes import open_static_world_model_run

# Tag read by diamond_kedro.hooks: the run's MLflow run (experiment diamond-<dataset.name>).
TRAIN_TAG = "static_world_model_train"


def create_pipeline(**kwargs) -> Pipeline:
    """One epoch per ``kedro run --pipelines=static_world_model`` (resumes ``<dataset.name>_<run.name>``):
    dynamics denoiser, upsampler (skipped without one), evaluation, commit."""
    return Pipeline(
        [
            node(open_static_world_model_run, "params:static_world_model", "run_swm_opened",
                 name="open_static_world_model_run"),
            node(train_csgo_denoiser, "run_swm_opened", "run_swm_denoiser_trained", name="train_swm_denoiser"),
            node(train_csgo_upsampler, "run_swm_denoiser_trained", "run_swm_upsampler_trained",
                 name="train_swm_upsampler"),
            node(evaluate_csgo, "run_swm_upsampler_trained", "run_swm_evaluated", name="evaluate_swm"),
            node(commit_csgo_run, "run_swm_evaluated", "static_world_model_metrics", name="commit_swm_run"),
        ],
        tags=[TRAIN_TAG],
    )
