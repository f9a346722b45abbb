"""The project's ``kedro run`` (src/diamond_kedro/cli.py): a user error is one line on stderr and exit status 2,
a bug keeps its traceback; through the real project (subprocess, ci profile) and in-process for the rules."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from diamond_kedro import cli as project_cli
from diamond_kedro.config import ConfigError
from diamond_kedro.datasets.writer import DatasetError
from tests.datasets.synthetic import write_video
from tests.pipelines.conftest import kedro_run, project  # noqa: F401 (the fixture)


def one_error_line(proc) -> str:
    """The run's stderr, which must be exactly one line, and the exit status 2."""
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2 and len(lines) == 1, (proc.returncode, proc.stderr[-3000:])
    assert lines[0].startswith("kedro run: error: ")
    return lines[0]


def static_profile(project: Path, **dataset) -> None:
    """Point the ci profile's static_world_model dataset at the test's files (lists cannot go through --params)."""
    ci = project / "conf/ci/parameters_static_world_model.yml"
    params = yaml.safe_load(ci.read_text())
    params["static_world_model"]["dataset"].update(dataset)
    params["static_world_model"]["run"]["num_epochs"] = 1
    ci.write_text(yaml.safe_dump(params))


def test_a_bad_parameter_is_one_line(project: Path) -> None:
    proc = kedro_run(project, "--pipelines=atari_epoch", "--env=ci", "--params=denoiser.training.batch_size=-3",
                     check=False)
    line = one_error_line(proc)
    assert "invalid parameters: denoiser.training.batch_size: Input should be greater than 0 (got -3)" in line
    # the traceback is in the log file (conf/logging.yml), and on the terminal with --verbose
    log = (project / "info.log").read_text()
    assert "Traceback (most recent call last)" in log and "ConfigError" in log
    verbose = kedro_run(project, "--pipelines=atari_epoch", "--env=ci", "--params=denoiser.training.batch_size=-3",
                        "--verbose", check=False)
    assert verbose.returncode != 0 and "Traceback" in verbose.stderr and len(verbose.stderr.splitlines()) > 10


def test_a_corrupt_video_and_a_bad_row_are_one_line(project: Path, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "clip.mp4").write_bytes(b"\x00\x01 this is not a video" * 50)
    pd.DataFrame({"frame": range(5), "action": [0, 1, 2, 1, 0]}).to_csv(raw / "clip.csv", index=False)
    static_profile(project, name="broken", path=str(raw))
    line = one_error_line(kedro_run(project, "--pipelines=static_world_model_ingest", "--env=ci", check=False))
    assert f"{raw / 'clip.mp4'}: cannot decode the video" in line

    good = tmp_path / "rows"
    write_video(good / "clip.mp4", 0, 5)
    pd.DataFrame({"frame": range(5), "action": [0, 1, "left", 1, 0]}).to_csv(good / "clip.csv", index=False)
    static_profile(project, name="badrow", path=str(good))
    line = one_error_line(kedro_run(project, "--pipelines=static_world_model_ingest", "--env=ci", check=False))
    assert f"{good / 'clip.csv'}: row 2" in line


def test_a_finished_run_is_one_line(project: Path, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    write_video(raw / "clip.mp4", 0, 12)
    pd.DataFrame({"frame": range(12), "action": [i % 3 for i in range(12)]}).to_csv(raw / "clip.csv", index=False)
    static_profile(project, name="done", path=str(raw))
    # training before the ingest: the one line says what to run first
    line = one_error_line(kedro_run(project, "--pipelines=static_world_model", "--env=ci", check=False))
    assert line.endswith("index.json does not exist: ingest the dataset first "
                         "(kedro run --pipelines=static_world_model_ingest)")
    kedro_run(project, "--pipelines=static_world_model_ingest", "--env=ci")
    kedro_run(project, "--pipelines=static_world_model", "--env=ci")  # its only epoch (num_epochs 1)
    line = one_error_line(kedro_run(project, "--pipelines=static_world_model", "--env=ci", check=False))
    assert line == "kedro run: error: run done_ci is over: all 1 epochs are committed"


# ----- the rules, in-process (Kedro's run replaced by a function that raises) -------------------------------


def invoke(monkeypatch: pytest.MonkeyPatch, exc: BaseException, *args: str):
    def fail(**kwargs):
        raise exc

    monkeypatch.setattr(project_cli.kedro_run, "callback", fail)
    monkeypatch.delenv(project_cli.VERBOSE_ENV, raising=False)
    return CliRunner().invoke(project_cli.cli, ["run", *args])


def wrapped(inner: BaseException) -> RuntimeError:
    """``inner`` as Kedro's runner or a hook would wrap it: raised while handling it."""
    try:
        try:
            raise inner
        except Exception as e:
            raise RuntimeError("node failed") from e
    except RuntimeError as outer:
        return outer


def test_user_errors_are_found_inside_wrappers_and_joined_into_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    result = invoke(monkeypatch, wrapped(ConfigError("invalid parameters:\n  a.b: too big\n  c: missing")))
    assert result.exit_code == 2
    assert result.stderr == "kedro run: error: invalid parameters: a.b: too big; c: missing\n"
    context_only = RuntimeError("outer")
    context_only.__context__ = DatasetError("clip.csv: row 3: bad")
    assert project_cli.find_user_error(context_only).args == ("clip.csv: row 3: bad",)


def test_a_bug_or_verbose_keeps_the_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    bug = invoke(monkeypatch, ValueError("a real bug"))
    assert bug.exit_code == 1 and isinstance(bug.exception, ValueError)  # re-raised: Kedro prints the traceback
    verbose = invoke(monkeypatch, DatasetError("x.csv: row 1: bad"), "--verbose")
    assert verbose.exit_code == 1 and isinstance(verbose.exception, DatasetError)
    monkeypatch.setenv(project_cli.VERBOSE_ENV, "1")
    assert isinstance(CliRunner().invoke(project_cli.cli, ["run"]).exception, DatasetError)


def test_commands_use_pipelines_not_the_deprecated_pipeline_option() -> None:
    """Kedro 1.7 warns that ``--pipeline`` is deprecated: the project's own commands, messages and tests say
    ``--pipelines`` (README and docs/ are checked by the docs build)."""
    import re

    root = Path(__file__).resolve().parents[1]
    files = [root / "Makefile", root / "dvc.yaml"]
    for folder, pattern in (("src", "*.py"), ("tests", "*.py"), ("conf", "*.yml"), ("notebooks", "*.ipynb")):
        files += sorted((root / folder).rglob(pattern))
    deprecated = re.compile(r"--pipeline(?![s\w])")
    checkers = {"test_cli.py", "test_docs_build.py"}  # the two tests that name the deprecated option to find it
    offenders = [f"{f.relative_to(root)}:{i}" for f in files if f.name not in checkers
                 for i, line in enumerate(f.read_text().splitlines(), 1) if deprecated.search(line)]
    assert offenders == []


def test_a_run_held_by_another_writer_is_one_line(project: Path) -> None:
    """A second `kedro run` on a run folder that another process writes stops at once, naming the holder, and
    touches nothing (the holder here is this test process, through the same lock a run takes)."""
    import os

    from diamond_kedro.utils.run_lock import RunLock

    folder = project / "data/runs/Breakout_seed0_ci"
    with RunLock(folder):
        proc = kedro_run(project, "--pipelines=atari_epoch", "--env=ci", check=False)
    line = one_error_line(proc)
    assert "run data/runs/Breakout_seed0_ci is in use by another writer" in line and f"pid {os.getpid()}" in line
    assert {p.name for p in folder.iterdir()} <= {".lock", ".lock.json"}  # no replay store, no state


def test_an_unknown_pipeline_and_a_missing_source_folder_are_one_line(project: Path, tmp_path: Path) -> None:
    line = one_error_line(kedro_run(project, "--pipelines=atari_epch", "--env=ci", check=False))
    assert "no pipeline named 'atari_epch'" in line and "atari_epoch" in line.split("the pipelines are:")[1]
    static_profile(project, name="nowhere", path=str(tmp_path / "no_such_folder"))
    line = one_error_line(kedro_run(project, "--pipelines=static_world_model_ingest", "--env=ci", check=False))
    assert f"video folder {tmp_path / 'no_such_folder'} does not exist (dataset.path)" in line
