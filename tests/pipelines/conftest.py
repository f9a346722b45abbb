"""Fixtures that run the real Kedro project (ci profile) in a throw-away copy of it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def project_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        KEDRO_DISABLE_TELEMETRY="1",
        DO_NOT_TRACK="1",
        DVC_NO_ANALYTICS="1",
        PYTHONUNBUFFERED="1",
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
    )
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def copy_project(dest: Path) -> Path:
    """The files a user's checkout has (no data, no MLflow store, no venv)."""
    for name in ("pyproject.toml", "dvc.yaml", "dvc_params.yaml", ".dvcignore", ".telemetry"):
        if (PROJECT / name).exists():
            shutil.copy2(PROJECT / name, dest / name)
    shutil.copytree(PROJECT / "conf", dest / "conf", ignore=shutil.ignore_patterns("local"))
    # Kedro puts <project>/src first on sys.path, so the copy's package is the one that runs
    shutil.copytree(PROJECT / "src", dest / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    (dest / "conf" / "local").mkdir(exist_ok=True)
    return dest


def kedro_run(cwd: Path, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [str(BIN / "kedro"), "run", *args]
    proc = subprocess.run(cmd, cwd=cwd, env=project_env(), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}")
    return proc


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return copy_project(tmp_path)
