"""Second processes for the one-writer tests: a lock holder, a run opened and held before its epoch, a tiny
ingest source that waits at its first file. Each test runs them with ``python -c`` from the repository root."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from diamond_kedro.datasets.writer import ActionSpec, RawEpisode, Unit

ROOT = Path(__file__).resolve().parents[1]


def spawn(code: str, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 300) -> None:
    """Until the other process says it is ready (a bound for a hung process, not a timing check)."""
    deadline = time.time() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"the other process ended early:\n{proc.stderr.read()[-3000:]}")
        if time.time() > deadline:
            proc.kill()
            raise AssertionError("the other process never became ready")
        time.sleep(0.05)


HOLD = """
import sys, time
from diamond_kedro.utils.run_lock import FolderLock
lock = FolderLock(sys.argv[1], sys.argv[2]).acquire()  # kept: a dropped FolderLock releases
open(sys.argv[3], "w").write("held")
time.sleep(600)
"""


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


class TinySource:
    """``n`` files of one 4-frame 8x8 episode each; with ``gate`` the first read writes ``gate/ready`` and
    waits for ``gate/go`` (an ingest caught in the middle)."""

    kind = "tiny"

    def __init__(self, n: int = 3, gate: str | None = None) -> None:
        self.n, self.gate = n, Path(gate) if gate else None

    def units(self) -> list[Unit]:
        return [Unit(f"f{i}", (f"e{i}",), f"tiny/f{i}") for i in range(self.n)]

    def action_spec(self) -> ActionSpec:
        return ActionSpec("discrete", 2)

    def settings(self) -> dict:
        return {}

    def read(self, unit: Unit) -> list[RawEpisode]:
        if self.gate is not None:
            (self.gate / "ready").write_text(unit.file_id)
            while not (self.gate / "go").exists():
                time.sleep(0.05)
            self.gate = None
        i = int(unit.file_id[1:])
        obs = np.full((4, 8, 8, 3), 10 * i, np.uint8)
        return [RawEpisode(unit.episodes[0], obs, np.zeros(4, np.int64))]
