"""The notebooks run top to bottom against a real ci-profile training run (two epochs of
``kedro run --pipelines=atari_epoch --env=ci`` in a throw-away copy of the project), and show what they
promise. The kernel is told where the run's MLflow store is through ``MLFLOW_TRACKING_URI``."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.pipelines.conftest import copy_project, kedro_run

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


@pytest.fixture(scope="module")
def ci_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = copy_project(tmp_path_factory.mktemp("project"))
    for _ in range(2):  # epoch 2 is an evaluation epoch of the ci profile (evaluate.every = 2)
        kedro_run(project, "--pipelines=atari_epoch", "--env=ci")
    return project


def execute(name: str, project: Path, monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """Run the notebook in a kernel (the venv's python: jupyter_client maps the spec's ``python`` to
    sys.executable) whose working directory is the project; returns all cell outputs."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{project / 'mlflow.db'}")
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), f"{name}: clear outputs before committing"
    NotebookClient(nb, kernel_name="python3", timeout=300, resources={"metadata": {"path": str(project)}}).execute()
    return [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]


def _text(outputs: list[dict]) -> str:
    parts = []
    for o in outputs:
        parts.append(o.get("text", ""))
        parts.extend(str(v) for k, v in o.get("data", {}).items() if k.startswith("text/"))
    return "\n".join(parts)


def test_inspect_run_notebook(ci_project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    outputs = execute("01_inspect_run.ipynb", ci_project, monkeypatch)
    text = _text(outputs)
    assert "Breakout_seed0_ci" in text
    assert "psnr_copy_last_h1" in text and "rew_accuracy" in text  # the fidelity table of epoch 2
    assert "human-normalised score" in text
    kinds = [k for o in outputs for k in o.get("data", {})]
    assert kinds.count("image/png") >= 3  # learning curves, fidelity curves, real-vs-imagined grid
    assert "image/gif" in kinds  # the side-by-side video


def test_paper_aggregates_notebook(ci_project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = _text(execute("02_paper_aggregates.ipynb", ci_project, monkeypatch))
    assert "mean HNS 1.459, IQM 0.641" in text
    assert "Breakout_seed0_ci" in text and "DIAMOND (paper, same games)" in text  # our run, beside the paper
