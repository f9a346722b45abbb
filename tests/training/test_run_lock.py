"""One writer per run folder: a second process opening a run fails at once naming the holder and touches
nothing, the first finishes with exactly its transitions; the lock of a killed process is taken over."""

from __future__ import annotations

import json
import logging
import socket
from pathlib import Path

import pytest

from diamond_kedro.config import parse_config
from diamond_kedro.replay.store import ReplayStore
from diamond_kedro.training.run import AtariRun
from diamond_kedro.utils.run_lock import FolderBusy
from diamond_kedro.utils.state_file import load_state_file

from ..lock_helpers import HOLD, snapshot, spawn, wait_for
from ..profiles import profile_parameters

KEY = "Breakout_seed0_ci"

WRITER = """
import json, sys, time
from pathlib import Path
from diamond_kedro.config import parse_config
from diamond_kedro.training.run import AtariRun
params, gate = json.loads(sys.argv[1]), Path(sys.argv[2])
run = AtariRun.open(parse_config(params))
(gate / "ready").write_text("open")
while not (gate / "go").exists():
    time.sleep(0.05)
run.run_epoch()
run.close()
print(json.dumps({"env_steps": run.counters.env_steps}))
"""


def _params(root: Path) -> dict:
    params = profile_parameters("ci")
    params["run"]["root"] = str(root)
    return params


def test_second_writer_of_a_run_fails_at_once_and_the_first_finishes(tmp_path: Path) -> None:
    params = _params(tmp_path / "runs")
    run_dir = tmp_path / "runs" / KEY
    first = spawn(WRITER, json.dumps(params), str(tmp_path))
    wait_for(tmp_path / "ready", first)
    before = snapshot(run_dir)

    with pytest.raises(FolderBusy) as err:
        AtariRun.open(parse_config(params))
    msg = str(err.value)
    assert "\n" not in msg and str(run_dir) in msg and f"pid {first.pid} on {socket.gethostname()} since" in msg
    assert snapshot(run_dir) == before  # nothing read-repaired, rolled back or written

    (tmp_path / "go").touch()
    out, errors = first.communicate(timeout=900)
    assert first.returncode == 0, errors[-3000:]
    steps = json.loads(out.strip().splitlines()[-1])["env_steps"]
    state = load_state_file(run_dir / "checkpoints" / "state.pt")
    store = ReplayStore(run_dir / "replay" / "train")
    assert state["counters"]["epoch"] == 1
    assert store.num_steps == steps == state["counters"]["env_steps"] == int(store.lengths.sum()) >= 250
    assert not (run_dir / ".lock.json").exists()  # the holder gave it back at close


def test_lock_left_by_a_killed_process_is_taken_over(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    run_dir = tmp_path / "runs" / KEY
    holder = spawn(HOLD, str(run_dir), "run", str(tmp_path / "ready"))
    wait_for(tmp_path / "ready", holder)
    holder.kill()  # SIGKILL: no clean-up, its .lock.json stays
    holder.wait()
    assert json.loads((run_dir / ".lock.json").read_text())["pid"] == holder.pid

    with caplog.at_level(logging.WARNING, logger="diamond_kedro.utils.run_lock"):
        run = AtariRun.open(parse_config(_params(tmp_path / "runs")))
    try:
        assert json.loads((run_dir / ".lock.json").read_text())["pid"] != holder.pid
        assert any(f"pid {holder.pid}" in r.message and "(dead)" in r.message for r in caplog.records)
    finally:
        run.close()
