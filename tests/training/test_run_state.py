"""The run state file holds data only: a pickled (old or crafted) ``state.pt`` is refused unread by every
reader, an old run folder converts once on request, and a resume never loads the state onto the device."""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import ale_py
import numpy as np
import pytest
import torch

from diamond_kedro.config import parse_config
from diamond_kedro.reporting import EpochReport
from diamond_kedro.training.run import AtariRun
from diamond_kedro.training.run_common import TrainingRun
from diamond_kedro.utils.state_file import (
    PickledStateFile, StateFileError, decode, encode, load_state_file, save_state_file,
)

from ..profiles import profile_parameters

KEY = "Breakout_seed0_ci"


def _params(root: Path) -> dict:
    params = profile_parameters("ci")
    params["run"]["root"] = str(root)
    return params


class _Payload:
    """Unpickling this runs a shell command that creates ``marker`` (what a crafted state.pt can do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _crafted_run(root: Path, marker: Path, fmt: object = 1) -> Path:
    run = root / KEY
    (run / "checkpoints").mkdir(parents=True)
    torch.save({"format": fmt, "agent": {}, "num_actions": 4, "counters": {"epoch": 1}, "x": _Payload(marker)},
               run / "checkpoints" / "state.pt")
    return run


@pytest.fixture(scope="module")
def one_epoch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ci run folder after one committed epoch (copied by each test that changes it)."""
    root = tmp_path_factory.mktemp("runs")
    run = AtariRun.open(parse_config(_params(root)))
    try:
        run.run_epoch()
    finally:
        run.close()
    return root


def _copy(one_epoch: Path, tmp_path: Path) -> Path:
    shutil.copytree(one_epoch, tmp_path / "runs")
    return tmp_path / "runs"


def test_codec_gives_back_the_same_data_and_refuses_objects() -> None:
    rng = np.random.default_rng(3)
    data = {
        "arrays": [np.arange(6, dtype=np.uint32).reshape(2, 3), rng.random(4), np.array([True, False]),
                   np.zeros((2, 2, 3), np.uint8)],
        "legacy_numpy": np.random.RandomState(5).get_state(),  # ('MT19937', uint32[624], int, int, float)
        "pcg": rng.bit_generator.state,  # 128-bit ints
        "python": __import__("random").Random(1).getstate(),
        "path": Path("a/b.pt"), "bytes": b"\x00\x01", "scalar": np.float32(1.5), "none": None,
        "tensors": {"w": torch.ones(2)},
    }
    back = decode(encode(data))
    for a, b in zip(data["arrays"], back["arrays"]):
        assert isinstance(b, np.ndarray) and b.dtype == a.dtype and np.array_equal(a, b)
    assert back["legacy_numpy"][0] == "MT19937" and np.array_equal(back["legacy_numpy"][1], data["legacy_numpy"][1])
    assert back["legacy_numpy"][2:] == data["legacy_numpy"][2:]
    assert back["pcg"] == data["pcg"] and back["python"] == data["python"]
    assert back["path"] == Path("a/b.pt") and back["bytes"] == b"\x00\x01" and back["scalar"] == 1.5
    with pytest.raises(TypeError, match=r"state\.x\.report"):
        encode({"x": {"report": EpochReport(epoch=1)}})


def test_pickled_state_runs_nothing_through_resume_play_and_sweep(tmp_path: Path, capsys) -> None:
    marker = tmp_path / "MARKER"
    run = _crafted_run(tmp_path / "runs", marker)
    state = run / "checkpoints" / "state.pt"

    with pytest.raises(PickledStateFile) as err:  # resume (what opening the run in a kedro run session calls)
        AtariRun.open(parse_config(_params(tmp_path / "runs")))
    msg = str(err.value)
    assert "\n" not in msg and str(state) in msg and f"diamond-kedro convert-run {run}" in msg
    assert not marker.exists()

    from diamond_kedro.play.cli import main as play_main

    for game in ("atari", "csgo"):  # `diamond-kedro play atari|csgo --run RUN` (no agent versions: state.pt)
        assert play_main([game, "--run", str(run), "--headless", "--steps", "1"]) == 2
        err_line = capsys.readouterr().err.strip()
        assert "\n" not in err_line and "convert-run" in err_line and str(state) in err_line, err_line
        assert not marker.exists()

    from diamond_kedro.sweep.spec import CellStatus
    from diamond_kedro.sweep.task import _progress

    with pytest.raises(PickledStateFile):  # what a sweep cell reads for its status table
        _progress(run, CellStatus("Breakout", 0, KEY))
    assert not marker.exists()


def test_play_cli_as_a_process_refuses_a_pickled_state(tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    run = _crafted_run(tmp_path / "runs", marker)
    proc = subprocess.run([sys.executable, "-m", "diamond_kedro", "play", "atari", "--run", str(run), "--headless",
                           "--steps", "1"], capture_output=True, text=True, env={**os.environ, "SDL_VIDEODRIVER": "dummy"})
    assert proc.returncode == 2 and "convert-run" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert not marker.exists()


def test_garbage_and_foreign_state_files_are_named(tmp_path: Path) -> None:
    path = tmp_path / "state.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(StateFileError, match="cannot read run state") as err:
        load_state_file(path)
    assert not isinstance(err.value, PickledStateFile)
    torch.save({"format": 1}, path)  # data, but not written by save_state_file
    with pytest.raises(StateFileError, match="not a diamond-kedro run state"):
        load_state_file(path)


def _old_format(state: dict) -> dict:
    """What the project wrote before the data-only format: pickled ALE states, the report as an object."""
    for sub in state["collector"]["env"]["sub_envs"]:
        sub["ale_state"] = pickle.dumps(ale_py.ALEState(sub["ale_state"]))
    state["report"] = EpochReport(**state["report"])
    return state


def test_old_run_folder_is_refused_then_converts_once_and_resumes_exactly(one_epoch: Path, tmp_path: Path,
                                                                         capsys) -> None:
    root = _copy(one_epoch, tmp_path)
    path = root / KEY / "checkpoints" / "state.pt"
    new = load_state_file(path)
    torch.save(_old_format(load_state_file(path)), path)  # an old run folder
    with pytest.raises(PickledStateFile, match="convert-run"):
        AtariRun.open(parse_config(_params(root)))

    from diamond_kedro.__main__ import main

    with pytest.raises(SystemExit) as done:
        main(["convert-run", str(root / KEY)])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "UNPICKLING" in out and (path.parent / "state.pt.pickled").is_file()
    converted = load_state_file(path)
    assert converted["collector"]["env"]["sub_envs"][0]["ale_state"] == new["collector"]["env"]["sub_envs"][0]["ale_state"]
    assert converted["report"]["epoch"] == 1

    run = AtariRun.open(parse_config(_params(root)))
    try:
        assert run.counters.epoch == 1
        assert torch.equal(torch.get_rng_state(), new["rng"]["torch"])
        assert run.rng.bit_generator.state == new["rng"]["numpy_generator"]
    finally:
        run.close()
    with pytest.raises(SystemExit) as again:  # a second conversion: nothing to do, said in one line
        main(["convert-run", str(root / KEY)])
    assert again.value.code == 2 and "already in the data-only format" in capsys.readouterr().err


def test_resume_loads_to_the_cpu_whatever_the_run_device(one_epoch: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """On CUDA the RNG states must arrive as CPU tensors (``torch.set_rng_state`` refuses others). Here the
    run's device reads ``meta`` while its state loads: a loader that maps the file onto the run's device
    gets meta tensors and fails; one that loads to the CPU and moves things deliberately resumes."""
    root = _copy(one_epoch, tmp_path)
    saved = load_state_file(root / KEY / "checkpoints" / "state.pt")
    original = TrainingRun._load_state

    def load_on_meta_device(self: TrainingRun) -> None:
        device, self.device = self.device, torch.device("meta")
        try:
            original(self)
        finally:
            self.device = device

    monkeypatch.setattr(TrainingRun, "_load_state", load_on_meta_device)
    torch.manual_seed(1234)  # something else than the saved state
    run = AtariRun.open(parse_config(_params(root)))
    try:
        assert torch.equal(torch.get_rng_state(), saved["rng"]["torch"])
        assert np.array_equal(np.random.get_state()[1], saved["rng"]["numpy"][1])
        assert run.counters.epoch == 1
    finally:
        run.close()


def test_resume_with_changed_parameters_names_them_and_refuses_model_shapes(
        one_epoch: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from diamond_kedro.training.run_common import ChangedModelParameters

    root = _copy(one_epoch, tmp_path)
    params = _params(root)
    lr = params["denoiser"]["training"]["lr"]
    params["denoiser"]["training"]["lr"] = lr / 2
    params["run"]["num_threads"] = 1  # a machine setting: not a change of the run
    with caplog.at_level("WARNING", logger="diamond_kedro.training.run_common"):
        run = AtariRun.open(parse_config(params))
    try:
        warned = " ".join(r.message for r in caplog.records)
        assert f"denoiser.training.lr ({lr!r} -> {lr / 2!r})" in warned and "num_threads" not in warned
        run.begin_epoch()  # the change travels with the next epoch's report (an MLflow tag)
        assert run.pending.tags["resumed_with_changed_params"] == f"denoiser.training.lr ({lr!r} -> {lr / 2!r})"
    finally:
        run.close()

    state = root / KEY / "checkpoints" / "state.pt"
    before = state.read_bytes()
    params = _params(root)
    params["actor_critic"]["model"]["lstm_dim"] = 2 * params["actor_critic"]["model"]["lstm_dim"]
    with pytest.raises(ChangedModelParameters) as err:
        AtariRun.open(parse_config(params))
    msg = str(err.value)
    assert "\n" not in msg and "actor_critic.model.lstm_dim (16 -> 32)" in msg and str(state) in msg
    assert state.read_bytes() == before


def test_a_run_that_cannot_open_gives_its_folder_back(one_epoch: Path, tmp_path: Path) -> None:
    """A state that does not fit (here: not readable) fails ``open`` with its one-line error, and the folder's
    lock is released at once -- not when the failed run object is garbage-collected, which the exception's
    traceback (kept by a notebook or, here, by pytest) would delay."""
    from diamond_kedro.utils.run_lock import is_locked

    root = _copy(one_epoch, tmp_path)
    (root / KEY / "checkpoints" / "state.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(StateFileError, match="cannot read run state") as err:
        AtariRun.open(parse_config(_params(root)))
    assert err.value is not None and not is_locked(root / KEY)
