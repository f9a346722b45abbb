"""``diamond-kedro convert-run RUN_FOLDER``: convert a run folder's old pickled ``checkpoints/state.pt`` to the
data-only format (:mod:`diamond_kedro.utils.state_file`), once, because the user asked for it.

The old format was loaded with full unpickling, which runs whatever code the file holds; the project now
refuses such files. Converting unpickles the file one last time -- so only convert run folders you trust
(your own, or from a source you trust) -- and keeps the original beside it as ``state.pt.pickled``.
Exit status: 0 converted, 2 for bad input (one line).
"""

from __future__ import annotations

import argparse
import pickle
import sys
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any

from diamond_kedro.errors import UserError

PROG = "diamond-kedro convert-run"


def _to_data(state: dict[str, Any]) -> dict[str, Any]:
    """The old objects as data: the epoch report as a dict, each ALE emulator state as ale-py's own bytes."""
    report = state.get("report")
    if report is not None and is_dataclass(report):
        # the fields it has: a report pickled before a field existed lacks it (EpochReport(**d) defaults it)
        state["report"] = {f.name: getattr(report, f.name) for f in fields(report) if hasattr(report, f.name)}
    env = (state.get("collector") or {}).get("env") or {}
    for sub in env.get("sub_envs") or []:
        blob = sub.get("ale_state") if isinstance(sub, dict) else None
        if isinstance(blob, bytes) and blob[:1] == b"\x80":  # a pickled ale_py.ALEState
            sub["ale_state"] = pickle.loads(blob).serialize()
    return state


def convert_run(root: Path, say: Any = print) -> Path:
    from diamond_kedro.utils.run_lock import RunLock
    from diamond_kedro.utils.state_file import convert_pickled_state

    path = Path(root) / "checkpoints" / "state.pt"
    if not path.is_file():
        raise UserError(f"{root} has no checkpoints/state.pt: not a run folder")
    with RunLock(Path(root)):  # no training process may be rewriting the state meanwhile
        return convert_pickled_state(path, fix=_to_data, say=say)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    p.add_argument("run", help="the run folder (the one holding checkpoints/state.pt)")
    args = p.parse_args(argv)
    try:
        convert_run(Path(args.run))
    except UserError as exc:
        print(f"{PROG}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    return 0
