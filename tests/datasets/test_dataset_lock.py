"""One writer per static-dataset folder: a second ingest into the folder of a running one fails at once,
naming the holder, and touches nothing; the first ends with exactly its episodes."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from diamond_kedro.datasets.writer import load_index, write_dataset
from diamond_kedro.replay.store import ReplayStore
from diamond_kedro.utils.run_lock import FolderBusy

from ..lock_helpers import TinySource, snapshot, spawn, wait_for

INGEST = """
import json, sys
from diamond_kedro.datasets.writer import write_dataset
from tests.lock_helpers import TinySource
summary = write_dataset(TinySource(3, gate=sys.argv[2]), sys.argv[1], (8, 8), None, fsync=False, progress=False)
print(json.dumps({"ingested": summary.ingested}))
"""


def test_second_ingest_into_one_folder_fails_at_once_and_the_first_finishes(tmp_path: Path) -> None:
    out = tmp_path / "data"
    first = spawn(INGEST, str(out), str(tmp_path))
    wait_for(tmp_path / "ready", first)  # the first ingest is reading its first file
    before = snapshot(out)

    with pytest.raises(FolderBusy) as err:
        write_dataset(TinySource(3), out, (8, 8), None, fsync=False, progress=False)
    msg = str(err.value)
    assert "\n" not in msg and f"dataset {out}" in msg and f"pid {first.pid} on {socket.gethostname()}" in msg
    assert snapshot(out) == before

    (tmp_path / "go").touch()
    stdout, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr[-3000:]
    assert json.loads(stdout.strip().splitlines()[-1]) == {"ingested": 3}
    index = load_index(out)
    assert index["in_progress"] is None and index["units"] == ["f0", "f1", "f2"]
    names = index["splits"]["train"] + index["splits"]["test"]
    assert sorted(names) == ["e0", "e1", "e2"]
    stores = [ReplayStore(out / "low_res" / s, create=False) for s in ("train", "test")]
    assert sum(s.num_episodes for s in stores) == 3 and sum(s.num_steps for s in stores) == 12
