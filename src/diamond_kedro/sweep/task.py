"""The body of one sweep cell's Ray task: the ``atari`` run of (game, seed), one Kedro session per epoch.

Each epoch is a ``kedro run --pipelines=atari_epoch`` in a fresh ``KedroSession`` (in this worker
process), which opens the run from its last committed state and commits it at its end. So a task that
dies anywhere (worker SIGKILLed, node lost, preempted) and is retried by Ray simply starts the next
session: the run rolls back the uncommitted epoch's replay chunks and resumes the emulator from the
committed state (no lost or duplicated transitions), and the MLflow hook finds the run's MLflow run by its
``diamond.run_key`` tag and continues it (one MLflow run per cell). The loop ends when the run writes its
``.run_is_over`` marker (the last epoch ran the final evaluation), exactly as the ``atari`` pipeline's loop.
"""

from __future__ import annotations

import faulthandler
import json
import logging
import os
import signal
import socket
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from diamond_kedro.sweep.spec import CellStatus, Sweep, merge, read_status, write_status

EPOCH_PIPELINE = "atari_epoch"


def cell_params(sweep: Sweep, game: str, seed: int) -> dict[str, Any]:
    """The cell's runtime parameters: the sweep's ``--params`` plus game, seed and run name."""
    return merge(sweep.params, {"env": {"game": game}, "run": {"seed": seed, "name": sweep.name}})


def _progress(run: Path, status: CellStatus) -> None:
    """Epoch, env steps, latest return and (once known) the number of epochs, from the run's files."""
    metrics_path = run / "metrics.json"
    if metrics_path.is_file():
        metrics = json.loads(metrics_path.read_text())
        status.epoch = int(metrics.get("epoch", status.epoch))
        status.env_steps = int(metrics.get("env_steps", status.env_steps))
        for source in ("final_return_mean", "test_dataset/return_mean"):
            if source in metrics:
                status.latest_return, status.return_source = float(metrics[source]), source
                break
    state_path = run / "checkpoints" / "state.pt"
    if status.total_epochs is None and state_path.is_file():
        from diamond_kedro.utils.state_file import load_state_file

        # data only (an old pickled state raises its one-line error); mmap: the counters without the models
        state = load_state_file(state_path, mmap=True)
        n = state["counters"].get("num_epochs_collect")
        if n is not None:
            status.total_epochs = int(n) + int(state["config"]["run"]["num_final_epochs"])


def train_cell(sweep: Sweep, game: str, seed: int, env_vars: dict[str, str]) -> dict[str, Any]:
    """Run (or resume) the cell's run to its end; returns its final status (as a dict)."""
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    os.environ.update(env_vars)
    os.chdir(sweep.project)  # the profile's relative paths (data/runs, the MLflow store) are the project's
    bootstrap_project(Path(sweep.project))

    path = sweep.status_path(game, seed)
    status = read_status(path) or CellStatus(game, seed, sweep.key(game, seed))
    status.attempt += 1  # > 1: Ray retried this task after its worker died
    status.state, status.error = "running", ""
    status.host, status.pid = socket.gethostname(), os.getpid()
    run = sweep.run_folder(game, seed)
    _progress(run, status)
    status.updated = time.time()
    write_status(path, status)

    log_path = sweep.log_path(game, seed)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log_path)
    # `kill -USR1 <pid>` (the pid in the cell's status) writes every thread's stack to the cell's log
    faulthandler.register(signal.SIGUSR1, file=handler.stream, all_threads=True)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    params = cell_params(sweep, game, seed)
    lock = None
    try:
        from diamond_kedro.utils.run_lock import RunLock

        # the run folder stays this task's between its epochs' sessions (each session re-takes it: re-entrant)
        lock = RunLock(run).acquire()
        while not (run / ".run_is_over").exists():
            with KedroSession.create(Path(sweep.project), env=sweep.env, runtime_params=params) as session:
                logging.getLogger().addHandler(handler)  # after the session configured logging
                try:
                    session.run(pipeline_names=[EPOCH_PIPELINE])
                finally:
                    logging.getLogger().removeHandler(handler)
            _progress(run, status)
            status.updated = time.time()
            write_status(path, status)
        status.state = "done"
    except Exception as exc:
        status.state = "failed"
        status.error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
        raise
    finally:
        if lock is not None:
            lock.release()
        faulthandler.unregister(signal.SIGUSR1)
        handler.close()
        status.updated = time.time()
        write_status(path, status)
    return asdict(status)
