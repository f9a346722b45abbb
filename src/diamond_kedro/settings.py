"""Kedro project settings."""

from kedro.config import OmegaConfigLoader

from diamond_kedro.hooks import MlflowTrackingHook, ValidateParametersHook

# Validation runs first (hooks run last-in-first-out), so a bad parameter fails before MLflow opens a run.
HOOKS = (MlflowTrackingHook(), ValidateParametersHook())

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    "config_patterns": {"mlflow": ["mlflow*", "mlflow*/**"]},
    # profiles (conf/quick, conf/ci) override single keys of the paper's defaults, not whole sections
    "merge_strategy": {"parameters": "soft", "mlflow": "soft"},
}
