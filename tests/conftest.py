"""Shared test set-up: quiet, offline, CPU, one thread per test process (the CI machine has 2 cores)."""

import os

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "1")

import torch  # noqa: E402

torch.set_num_threads(1)
