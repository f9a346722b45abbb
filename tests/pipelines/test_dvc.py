"""`dvc repro` reproduces a whole (ci-profile) run from dvc.yaml; `dvc metrics show` reads its metrics."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import yaml

from .conftest import BIN, project_env


def _dvc(cwd: Path, *args: str, timeout: float = 900) -> str:
    proc = subprocess.run([str(BIN / "dvc"), *args], cwd=cwd, env=project_env(), capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f"dvc {' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout


def test_dvc_repro_runs_a_whole_run_and_reports_metrics(project: Path) -> None:
    params = yaml.safe_load((project / "dvc_params.yaml").read_text())
    params["kedro_env"] = "ci"
    (project / "dvc_params.yaml").write_text(yaml.safe_dump(params))
    _dvc(project, "init", "--no-scm", "-q")

    _dvc(project, "repro")
    run = project / "data" / "runs" / "Breakout_seed0_ci"
    metrics = json.loads((run / "metrics.json").read_text())
    # ci profile: 300 env steps; 200 initial + 2 collecting epochs of 50, then 1 final epoch
    assert metrics["epoch"] == 3 and metrics["env_steps"] == 300
    assert "final_return_mean" in metrics
    assert (run / ".run_is_over").exists()

    shown = _dvc(project, "metrics", "show", "--json")
    data = json.dumps(json.loads(shown))
    assert "final_return_mean" in data and "denoiser/train/loss_denoising" in data

    # nothing changed: the stage is up to date and is not run again
    assert "didn't change" in _dvc(project, "repro") or "up to date" in _dvc(project, "status")
