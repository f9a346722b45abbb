"""The MLflow hook under crashes and concurrency: a fresh store created by several processes at once, a run
created without its parameters, an epoch's report sent again."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from diamond_kedro.hooks import MlflowTrackingHook
from diamond_kedro.io.run_session import ATARI_TAG
from diamond_kedro.reporting import EpochReport

PARAMS = {"env.game": "Breakout", "run.seed": 0, "denoiser.model.channels": [8, 8], "world_model_env.horizon": 15}


class _Pipeline:
    """What the hook asks of a Kedro pipeline: its nodes' tags (one Atari training node) and inputs."""

    nodes: list = [SimpleNamespace(tags={ATARI_TAG}, namespace=None)]

    def inputs(self) -> set[str]:
        return {"replay_train"}


def _hook(uri: str, tmp: Path) -> MlflowTrackingHook:
    hook = MlflowTrackingHook()
    hook._conf = {"experiment_name": "diamond-atari", "artifact_location": str(tmp / "mlruns"),
                  "tracking_uri": uri, "register_models": False}
    hook.before_pipeline_run(run_params={}, pipeline=_Pipeline(), catalog=None)
    return hook


def _first_epoch(uri: str, tmp: str, key: str, start: Any, errors: Any) -> None:
    """One `kedro run` process: its hook opens the store and logs epoch 1 of run ``key``."""
    import os

    os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.environ.pop("DIAMOND_MLFLOW", None)
    try:
        start.wait()
        hook = _hook(uri, Path(tmp))
        hook._log(EpochReport(epoch=1, run_key=key, params=PARAMS, metrics={"loss": 1.0}))
        hook.after_pipeline_run()
    except Exception as exc:  # noqa: BLE001 -- reported to the test
        errors.put(f"{key}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")


def test_processes_creating_a_fresh_store_at_once_all_succeed(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    ctx = mp.get_context("spawn")
    # a fresh store, three processes at once (before the lock, the race lost two of the three)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    start, errors = ctx.Barrier(3), ctx.Queue()
    procs = [ctx.Process(target=_first_epoch, args=(uri, str(tmp_path), f"Breakout_seed{i}_x", start, errors))
             for i in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
    lost = []
    while not errors.empty():
        lost.append(errors.get())
    assert not lost and all(p.exitcode == 0 for p in procs), lost
    client = MlflowClient(tracking_uri=uri)
    (exp,) = [e for e in client.search_experiments() if e.name == "diamond-atari"]
    runs = client.search_runs([exp.experiment_id])
    assert sorted(r.info.run_name for r in runs) == [f"Breakout_seed{i}_x" for i in range(3)]
    assert all(r.data.metrics == {"loss": 1.0} for r in runs)


class _Crash(Exception):
    """Stands for the process being killed at that point."""


def test_a_run_created_without_its_params_gets_them_on_resume(tmp_path: Path, monkeypatch) -> None:
    from mlflow import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("DIAMOND_MLFLOW", raising=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    hook = _hook(uri, tmp_path)
    real = hook._client.log_batch

    def crash_on_params(run_id: str, **kw: Any) -> None:
        if kw.get("params"):
            raise _Crash("killed between create_run and the parameter upload")
        real(run_id, **kw)

    monkeypatch.setattr(hook._client, "log_batch", crash_on_params)
    with pytest.raises(_Crash):
        hook._log(EpochReport(epoch=1, run_key="Breakout_seed0_x", params=PARAMS, metrics={"loss": 1.0}))
    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("diamond-atari").experiment_id])
    assert run.data.params == {}  # the crash left the run without parameters
    # the next `kedro run` resumes the run: its parameters land
    again = _hook(uri, tmp_path)
    again._log(EpochReport(epoch=1, run_key="Breakout_seed0_x", params=PARAMS, metrics={"loss": 1.0}))
    run = client.get_run(run.info.run_id)
    assert run.data.params == {k: str(v) for k, v in PARAMS.items()}
    assert [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "loss")] == [(1, 1.0)]


def test_an_epoch_report_sent_again_adds_nothing_twice(tmp_path: Path, monkeypatch) -> None:
    import time

    import numpy as np
    from mlflow import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("DIAMOND_MLFLOW", raising=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    clock = iter(range(1_700_000_000, 1_800_000_000))  # every time.time() call a second later
    monkeypatch.setattr(time, "time", lambda: float(next(clock)))
    metrics = {f"m{i}": float(i) for i in range(700)}  # two batches (500 + 200)
    report = EpochReport(epoch=3, run_key="Breakout_seed0_x", params=PARAMS, metrics=metrics,
                         images={"frame": np.zeros((4, 4, 3), np.uint8)})
    hook = _hook(uri, tmp_path)
    # a crash after the metrics were logged, before the report was recorded as logged
    monkeypatch.setattr(hook._client, "log_image", lambda *a, **k: (_ for _ in ()).throw(_Crash("killed")))
    with pytest.raises(_Crash):
        hook._log(report)
    # the next process sends the same report again (run_common's _flush_unlogged_report), then once more
    for _ in range(2):
        again = _hook(uri, tmp_path)
        again._log(report)
    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("diamond-atari").experiment_id])
    for key in ("m0", "m499", "m500", "m699"):
        assert [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, key)] == [(3, metrics[key])]
    # the next epoch is logged as usual
    again._log(EpochReport(epoch=4, run_key="Breakout_seed0_x", params=PARAMS, metrics={"m0": 5.0}))
    assert [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "m0")] == [(3, 0.0), (4, 5.0)]
