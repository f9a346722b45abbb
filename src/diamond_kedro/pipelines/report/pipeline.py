"""``kedro run --pipelines=report``: read the training runs from MLflow, write the tables and plots under
``data/08_reporting/``, log them as an MLflow run named "report".

Takes ``params:report`` only, never the whole ``parameters`` dict: the Atari validation and MLflow hooks
act on pipelines that read ``parameters`` (a training run), which a report is not."""

from kedro.pipeline import Pipeline, node

from .nodes import build_report_node, load_tracked_runs, log_report_node


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(load_tracked_runs, inputs="params:report", outputs="report_runs", name="load_tracked_runs"),
            node(build_report_node, inputs=["report_runs", "params:report"], outputs="report", name="build_report"),
            node(log_report_node, inputs=["report", "params:report"], outputs="report_mlflow_run_id",
                 name="log_report"),
        ]
    )
