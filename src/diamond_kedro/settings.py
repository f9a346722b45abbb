"""Kedro project settings."""

from kedro.config import OmegaConfigLoader

from diamond_kedro.hooks import MlflowTrackingHook, RunSessionHook, ValidateParametersHook

# Hooks run last-in-first-out: validation first (a bad parameter fails before MLflow opens a run), then
# MLflow (its sink ready before a run is opened: opening may send a report a crash left unsent), then the
# training runs' session (closed last after the pipeline).
HOOKS = (RunSessionHook(), MlflowTrackingHook(), ValidateParametersHook())

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    "config_patterns": {"mlflow": ["mlflow*", "mlflow*/**"]},
    # profiles (conf/quick, conf/ci) override single keys of the paper's defaults, not whole sections
    "merge_strategy": {"parameters": "soft", "mlflow": "soft"},
}
