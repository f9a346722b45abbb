"""The project's Kedro CLI: ``kedro run`` (and ``diamond-kedro`` without a sub-command) as Kedro's own, except
that a user error ends the run with one line on stderr and exit status 2 instead of a page of traceback.

``kedro run --pipelines=atari`` is a whole training run: the ``atari`` pipeline is the ``atari_epoch`` graph
(one epoch of Algorithm 1, no looping node), and this command runs it once per epoch, each in a fresh Kedro
session with the same options, until the epoch that commits reports the run over (``EpochReport.run_is_over``,
the same on every torchrun rank). So each epoch is opened, committed and reported on its own (the MLflow
hook resumes the run's one MLflow run each session and logs the epoch at step = epoch), a killed run resumes
at its last committed epoch, and the last session's outputs (its ``epoch_metrics``, with the final
evaluation's ``final_return_mean``) are the command's result. ``sweep/task.py`` loops the same way.

Kedro loads ``<package>/cli.py`` and lets the commands of its ``cli`` group override the built-in ones, and
``find_run_command`` (used by ``python -m diamond_kedro``) takes this module's ``run``. The command reuses
Kedro's options unchanged and adds ``--verbose``.

A user error is any :class:`diamond_kedro.errors.UserError` (an invalid parameter, a bad dataset file or
row, a finished run, a folder held by another process), also when something else wraps it (its
``__cause__`` / ``__context__`` chain is searched). Its traceback still goes to the log file (the
``diamond_kedro.cli.traceback`` logger of ``conf/logging.yml``: ``info.log``), and to the terminal with
``--verbose`` or ``DIAMOND_KEDRO_VERBOSE=1``. Any other exception is a bug and keeps Kedro's traceback.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Callable

import click
from kedro.framework.cli.project import run as kedro_run

from diamond_kedro.errors import UserError

VERBOSE_ENV = "DIAMOND_KEDRO_VERBOSE"
# conf/logging.yml sends this logger to the log file only (not the console), so the one line stays one line
TRACEBACK_LOGGER = "diamond_kedro.cli.traceback"
EXIT_USER_ERROR = 2  # as argparse, ``diamond-kedro play|sweep`` and click's usage errors


def find_user_error(exc: BaseException) -> UserError | None:
    """``exc`` itself or the first :class:`UserError` among the exceptions it was raised from or during."""
    todo, seen = [exc], set()
    while todo:
        e = todo.pop(0)
        if e is None or id(e) in seen:
            continue
        if isinstance(e, UserError):
            return e
        seen.add(id(e))
        todo += [e.__cause__, e.__context__]
    return None


def one_line(exc: BaseException) -> str:
    """The message on one line: a multi-line message (one line per bad parameter) is joined with '; '."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    return lines[0] + (" " + "; ".join(lines[1:]) if len(lines) > 1 else "")


class UnknownPipeline(UserError):
    """``--pipelines`` names a pipeline the registry does not have."""


def pipeline_names() -> list[str]:
    """The registry's pipelines: one package per pipeline under ``diamond_kedro.pipelines`` (``find_pipelines``)."""
    import pkgutil

    import diamond_kedro.pipelines as package

    return sorted(m.name for m in pkgutil.iter_modules(package.__path__) if m.ispkg)


def unknown_pipeline(exc: BaseException) -> UnknownPipeline | None:
    """An unknown ``--pipelines`` name. Kedro 1.7 discovers only the pipelines asked for, and the registry's
    ``find_pipelines(raise_errors=True)`` then fails to import ``diamond_kedro.pipelines.<name>`` (an
    ImportError; a name missing from a registry dict is a plain ValueError "Failed to find the pipeline named").
    Recognised by the exception and by the module not existing, so a pipeline that exists but fails to import
    (a bug) keeps its traceback. The one line lists the pipelines there are."""
    import importlib.util
    import re

    e: BaseException | None = exc
    while e is not None:
        m = re.search(r"importing the '(diamond_kedro\.pipelines\.([\w.]+))' module", str(e))
        if isinstance(e, ImportError) and m:
            try:
                exists = importlib.util.find_spec(m.group(1)) is not None
            except (ImportError, ValueError):
                exists = False
            name = m.group(2)
            break
        m = re.match(r"Failed to find the pipeline named '([^']*)'", str(e))
        if isinstance(e, ValueError) and m:
            exists, name = False, m.group(1)
            break
        e = e.__cause__ or e.__context__
    else:
        return None
    if exists:
        return None
    return UnknownPipeline(f"no pipeline named '{name}'; the pipelines are: {', '.join(pipeline_names())}")


def _verbose_env() -> bool:
    return os.environ.get(VERBOSE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def _log_traceback(exc: BaseException) -> None:
    """Write the traceback to the log file(s) only: the handlers conf/logging.yml gives the traceback logger,
    else the file handlers of the root logger (a user's own logging config); never to the console."""
    logger = logging.getLogger(TRACEBACK_LOGGER)
    handlers = logger.handlers or [h for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]
    record = logger.makeRecord(logger.name, logging.ERROR, __file__, 0, "kedro run failed: %s", (one_line(exc),),
                               (type(exc), exc, exc.__traceback__))
    for handler in handlers:
        if record.levelno >= handler.level:
            handler.handle(record)


WHOLE_RUN_PIPELINES = frozenset({"atari"})  # run epoch after epoch until the run is over
EPOCH_REPORT = "epoch_metrics"  # the output of atari_epoch's commit_epoch node
log = logging.getLogger(__name__)


def is_whole_run(kwargs: dict[str, Any]) -> bool:
    names = set(kwargs.get("pipelines") or ()) | ({kwargs["pipeline"]} if kwargs.get("pipeline") else set())
    return bool(names & WHOLE_RUN_PIPELINES)


def committed_report(result: dict[str, Any] | None) -> Any:
    """The ``EpochReport`` a session committed, or None (a partial run, e.g. ``--to-nodes``, commits none).
    Kedro 1.x returns the free outputs' datasets, not their data: load it."""
    report = (result or {}).get(EPOCH_REPORT)
    if report is not None and hasattr(report, "load") and not hasattr(report, "run_is_over"):
        report = report.load()
    return report


def run_epochs(run_session: Callable[[], Any]) -> Any:
    """Call ``run_session`` (one Kedro session of the epoch pipeline) until its committed epoch was the run's
    last. A run already over when asked is not an error (nothing to do, as ``dvc repro`` of a finished
    stage); over during the loop it is the end. Returns the last session's result.

    Each session's run takes the run folder's lock and gives it back at its commit; from the first commit
    on, the loop holds it too (re-entrant in this process, rank 0 only, as the sweep's worker does), so no
    other process takes the run over between two epochs."""
    from diamond_kedro.distributed import env_rank  # lazily: other commands don't import torch
    from diamond_kedro.training.run_common import RunIsOver
    from diamond_kedro.utils.run_lock import RunLock

    result, epochs, lock = None, 0, None
    try:
        while True:
            try:
                result = run_session()
            except Exception as exc:
                user_error = find_user_error(exc)
                if epochs == 0 and isinstance(user_error, RunIsOver):
                    log.info("%s: nothing to do", one_line(user_error))
                    return {}
                raise
            epochs += 1
            report = committed_report(result)
            if report is None:
                return result
            if report.run_is_over:
                final = {k: v for k, v in report.metrics.items() if k.startswith("final_")}
                log.info("Run %s is over after epoch %d (%d this command)%s", report.run_key, report.epoch, epochs,
                         f": {final}" if final else "")
                return result
            if lock is None and env_rank() == 0 and report.params.get("run.root"):
                lock = RunLock(Path(str(report.params["run.root"])) / report.run_key).acquire()
    finally:
        if lock is not None:
            lock.release()


def _run(verbose: bool, **kwargs: Any) -> Any:
    # MLflow's own stderr handler logs INFO lines ("Creating initial MLflow database tables...") on a new
    # store; warnings are enough on the terminal (MLFLOW_LOGGING_LEVEL=INFO brings them back). Set before the
    # hooks import mlflow, which reads it once.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    try:
        if is_whole_run(kwargs):
            return run_epochs(lambda: kedro_run.callback(**kwargs))
        return kedro_run.callback(**kwargs)
    except Exception as exc:
        user_error = find_user_error(exc) or unknown_pipeline(exc)
        _log_traceback(exc)
        if user_error is None or verbose or _verbose_env():
            raise
        click.echo(f"kedro run: error: {one_line(user_error)}", err=True)
        click.get_current_context().exit(EXIT_USER_ERROR)


@click.group(name="diamond_kedro")
def cli() -> None:
    """diamond-kedro's project commands (``kedro run`` with one-line user errors)."""


run = click.Command(
    name="run",
    callback=_run,
    params=[
        *kedro_run.params,
        click.Option(
            ["--verbose"], is_flag=True, default=False,
            help=f"show the full traceback of a user error too (or set {VERBOSE_ENV}=1); it is always in the log file",
        ),
    ],
    help=(kedro_run.help or "Run the pipeline.")
    + "\n\nA user error (bad parameter, bad dataset file, finished run) is printed as one line and exits 2.",
    context_settings=kedro_run.context_settings,
)
cli.add_command(run)
