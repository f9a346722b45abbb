"""``play --log-mlflow`` with a store that cannot be written ends in one line, before anything is played."""

from __future__ import annotations

from pathlib import Path

import pytest

from diamond_kedro.play.cli import main


@pytest.mark.parametrize("uri", ["sqlite:////proc/diamond-no-such/mlflow.db", "sqlite:///{tmp}/a_file/mlflow.db",
                                 "sqlite:///{tmp}/garbage.db"], ids=["under_proc", "under_a_file", "not_a_database"])
def test_an_unwritable_mlflow_store_is_one_line(atari_run: Path, tmp_path: Path, uri: str,
                                                capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a_file").write_text("a file, not a folder")
    (tmp_path / "garbage.db").write_bytes(b"not sqlite " * 500)
    uri = uri.format(tmp=tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    out = tmp_path / "v.mp4"
    rc = main(["atari", "--run", str(atari_run), "--headless", "--steps", "2", "--record", str(out),
               "--log-mlflow", "--height", "32"])
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert "\n" not in err and "Traceback" not in err, err
    assert err.startswith("diamond-kedro play atari: error: --log-mlflow: cannot log to the MLflow store " + uri), err
    assert not out.exists()  # refused before playing
