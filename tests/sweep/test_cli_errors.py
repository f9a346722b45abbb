"""``diamond-kedro sweep`` ends in one error line (exit status 2) for a run root it cannot write, before Ray."""

from __future__ import annotations

from pathlib import Path

import pytest

from diamond_kedro.sweep.cli import main as sweep_main

from ..pipelines.conftest import copy_project


@pytest.mark.parametrize("root", ["/proc/x", "{tmp}/a_file/runs"], ids=["under_proc", "under_a_file"])
def test_an_unwritable_run_root_is_one_line(tmp_path: Path, root: str, capsys: pytest.CaptureFixture,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "project").mkdir()
    project = copy_project(tmp_path / "project")
    (tmp_path / "a_file").write_text("a file, not a folder")
    root = root.format(tmp=tmp_path)
    monkeypatch.setenv("DIAMOND_MLFLOW", "0")
    rc = sweep_main(["--games", "Breakout", "--seeds", "0", "--env", "ci", "--project-dir", str(project),
                     "--params", f"run.root={root}", "--no-report"])
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert "\n" not in err and "Traceback" not in err, err
    assert err.startswith(f"diamond-kedro sweep: error: run.root {root} cannot be created or written"), err
