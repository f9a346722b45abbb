"""What an epoch reports: metrics, pictures, files; and where reports go.

A training run gathers one ``EpochReport`` per epoch and, once the epoch is committed to disk, hands it to
every registered sink (``emit``). The Kedro MLflow hook registers a sink that logs at ``step = epoch``; a
notebook or test can register its own. The library never imports MLflow: ``log_to_mlflow`` receives the
module (or anything with the same three functions).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

ReportSink = Callable[["EpochReport"], None]
_SINKS: list[ReportSink] = []


def add_sink(sink: ReportSink) -> None:
    _SINKS.append(sink)


def remove_sink(sink: ReportSink) -> None:
    if sink in _SINKS:
        _SINKS.remove(sink)


def emit(report: "EpochReport") -> None:
    """Send a committed epoch's report to every sink (MLflow, notebooks, tests)."""
    for sink in list(_SINKS):
        sink(report)


def flatten(tree: dict[str, Any], prefix: str = "", sep: str = ".") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists are kept as values)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{sep}{key}" if prefix else str(key)
        if isinstance(value, dict):
            out.update(flatten(value, name, sep))
        else:
            out[name] = value
    return out


@dataclass
class EpochReport:
    """Metrics (``component/split/name`` keys, spec §6.5), images (HWC uint8) and artifact files."""

    epoch: int
    metrics: dict[str, float] = field(default_factory=dict)
    images: dict[str, np.ndarray] = field(default_factory=dict)
    artifacts: list[tuple[str, Path]] = field(default_factory=list)  # (artifact sub-folder, file)

    def merge(self, other: "EpochReport") -> None:
        self.metrics.update(other.metrics)
        self.images.update(other.images)
        self.artifacts.extend(other.artifacts)

    def add(self, prefix: str, metrics: dict[str, float]) -> None:
        for name, value in metrics.items():
            self.metrics[f"{prefix}/{name}" if prefix else name] = float(value)

    def finite_metrics(self) -> dict[str, float]:
        return {k: v for k, v in self.metrics.items() if math.isfinite(v)}

    def log_to_mlflow(self, mlflow: Any) -> None:
        metrics = self.finite_metrics()
        if metrics:
            mlflow.log_metrics(metrics, step=self.epoch)
        for key, image in self.images.items():
            mlflow.log_image(image, key=key, step=self.epoch)
        for folder, path in self.artifacts:
            if Path(path).exists():
                mlflow.log_artifact(str(path), artifact_path=folder)
