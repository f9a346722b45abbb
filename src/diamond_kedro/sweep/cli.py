"""``diamond-kedro sweep``: games x seeds of the ``atari`` run on Ray, locally or on a cluster.

    diamond-kedro sweep --games Breakout,Pong --seeds 0-4 --env quick
    diamond-kedro sweep --games atari100k --seeds 0-4 --env base --address auto --gpus-per-run 1 --cpus-per-run 4
    diamond-kedro sweep --status --env quick            # the table of an existing sweep, no Ray needed

One Ray task per (game, seed) (:mod:`.task`), retried by Ray when its worker dies; the runs resume from
their committed state. Without ``--address`` Ray starts an embedded single-machine cluster bound to
127.0.0.1. When every cell has ended, the ``report`` pipeline runs over the sweep's runs. Running the
same command again continues the sweep (finished cells return at once). Exit status: 0 when every cell
is done, 1 when one failed, 2 for bad input.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from diamond_kedro.sweep.spec import (
    CellStatus,
    Sweep,
    SweepError,
    check_name,
    format_table,
    merge,
    parse_games,
    parse_params,
    parse_seeds,
    read_status,
    write_status,
)

PROG = "diamond-kedro sweep"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Sweep games x seeds of the atari run on Ray.")
    p.add_argument("--games", help="comma-separated games (Breakout,Pong) or atari100k for the 26 games")
    p.add_argument("--seeds", help="seeds: 0-4, 0,3,7 or 0-2,10")
    p.add_argument("--env", default="base", help="Kedro profile (conf/<env>): base, quick, ci (default base)")
    p.add_argument("--params", default=None, help="extra parameters for every run, as kedro run --params: a.b=1,c=2")
    p.add_argument("--name", default=None, help="sweep name = the runs' run.name (default: the profile's run.name)")
    p.add_argument("--address", default=None,
                   help="Ray cluster: auto (a cluster started with `ray start` on this machine) or ray://host:10001; "
                        "default: an embedded local cluster")
    p.add_argument("--gpus-per-run", type=float, default=0, help="GPUs reserved per run (default 0)")
    p.add_argument("--cpus-per-run", type=float, default=1, help="CPUs reserved per run (default 1)")
    p.add_argument("--max-concurrent", type=int, default=None, help="at most K runs at once (default: as resources allow)")
    p.add_argument("--max-retries", type=int, default=3, help="Ray retries of a run whose worker died (default 3)")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of the embedded local cluster (default: all)")
    p.add_argument("--no-report", action="store_true", help="do not run the report pipeline at the end")
    p.add_argument("--status", action="store_true", help="print the table of an existing sweep and exit")
    p.add_argument("--adopt", action="store_true",
                   help="let the sweep continue run folders of the same key that it did not start itself")
    p.add_argument("--project-dir", default=None, help="the project folder (default: the current one)")
    return p


# ------------------------------------------------------------------------------------------------
# resolving the sweep from the project's configuration
# ------------------------------------------------------------------------------------------------


def _project(path: str | None) -> Path:
    project = Path(path or os.getcwd()).resolve()
    if not (project / "conf" / "base").is_dir() or not (project / "pyproject.toml").is_file():
        raise SweepError(f"{project} is not the diamond-kedro project folder (no conf/base): run from it or pass --project-dir")
    return project


def _kedro_parameters(project: Path, env: str, params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(parameters, mlflow config) of profile ``env`` with ``params`` applied, as ``kedro run`` sees them."""
    if not (project / "conf" / env).is_dir():
        envs = sorted(p.name for p in (project / "conf").iterdir() if p.is_dir() and p.name != "local")
        raise SweepError(f"--env: no profile {env!r} (conf/{env} is missing); profiles: {', '.join(envs)}")
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    bootstrap_project(project)
    with KedroSession.create(project, env=env, runtime_params=params) as session:
        context = session.load_context()
        try:
            mlflow_conf = dict(context.config_loader["mlflow"])
        except KeyError:
            mlflow_conf = {}
        return dict(context.params), mlflow_conf


def _tracking_uri(project: Path, mlflow_conf: dict[str, Any]) -> str:
    """The MLflow store every task logs to: ``$MLFLOW_TRACKING_URI``, else the profile's, made absolute
    (a relative SQLite path would be resolved in each worker's own folder)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or mlflow_conf.get("tracking_uri", "sqlite:///mlflow.db")
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        uri = prefix + str(project / uri[len(prefix):])
    return uri


def resolve_sweep(args: argparse.Namespace, need_cells: bool) -> Sweep:
    from diamond_kedro.config import parse_config

    project = _project(args.project_dir)
    params = parse_params(args.params)
    kparams, mlflow_conf = _kedro_parameters(project, args.env, params)
    name = check_name(args.name or str(kparams.get("run", {}).get("name", "default")))
    games = parse_games(args.games) if need_cells or args.games else []
    seeds = parse_seeds(args.seeds) if need_cells or args.seeds else []
    # every game's parameters are valid before anything starts (ConfigError names the bad key)
    cfg = parse_config(merge(kparams, {"run": {"name": name}}))
    for game in games:
        parse_config(merge(kparams, {"env": {"game": game}, "run": {"name": name}}))
    run_root = Path(cfg.run.root)
    run_root = run_root if run_root.is_absolute() else project / run_root
    folder = run_root.parent / "sweeps" / name
    if need_cells:  # both folders exist and can be written before anything starts (run.root=/proc/x cannot)
        for what, path in (("run.root", run_root), ("the sweep folder", folder)):
            try:
                path.mkdir(parents=True, exist_ok=True)
                if not os.access(path, os.W_OK | os.X_OK):
                    raise PermissionError(13, "not writable")
            except OSError as exc:
                raise SweepError(f"{what} {path} cannot be created or written ({exc.strerror or exc}); "
                                 "set run.root (--params run.root=...) to a writable folder") from None
    return Sweep(
        name=name,
        folder=folder,
        project=str(project),
        env=args.env,
        games=games,
        seeds=seeds,
        params=params,
        run_root=str(run_root),
        tracking_uri=_tracking_uri(project, mlflow_conf),
        experiment_name=str(mlflow_conf.get("experiment_name", "diamond-atari")),
        artifact_location=mlflow_conf.get("artifact_location"),
    )


# ------------------------------------------------------------------------------------------------
# progress
# ------------------------------------------------------------------------------------------------


class Table:
    """The live table: redrawn in place on a terminal, printed on each change otherwise (logs, CI)."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty()
        self.last = ""
        self.lines = 0

    def show(self, text: str) -> None:
        if text == self.last:
            return
        if self.tty and self.lines:
            self.stream.write(f"\x1b[{self.lines}F\x1b[J")  # up to the table's first line, clear below
        elif not self.tty:
            self.stream.write(time.strftime("[%H:%M:%S]\n"))
        self.stream.write(text + "\n")
        self.stream.flush()
        self.last, self.lines = text, text.count("\n") + 1


def _mark(sweep: Sweep, game: str, seed: int, state: str, error: str = "") -> None:
    path = sweep.status_path(game, seed)
    status = read_status(path) or CellStatus(game, seed, sweep.key(game, seed))
    status.state, status.error, status.updated = state, error, time.time()
    write_status(path, status)


# ------------------------------------------------------------------------------------------------
# running
# ------------------------------------------------------------------------------------------------


LOOPBACK = "127.0.0.1"


def _init_ray(args: argparse.Namespace) -> Any:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    if args.address:
        ray.init(address=args.address, log_to_driver=False)
        return ray
    # An embedded cluster for this machine alone, every server bound to 127.0.0.1 and no dashboard. Ray binds
    # its servers (GCS, raylet, object manager, each worker, the runtime-env and dashboard agents) to the
    # node's address, but ray.init turns _node_ip_address="127.0.0.1" back into the machine's external
    # address (services.resolve_ip_for_localhost) unless Ray's "no multi-node cluster" switch is off -- the
    # RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 setting, read once when ray is imported. So the switch is turned
    # off for this call only, and the node's address checked afterwards: a Ray that binds elsewhere stops
    # the sweep instead of exposing the cluster.
    from ray._private import ray_constants

    saved = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        ray.init(
            num_cpus=args.num_cpus or os.cpu_count(),
            include_dashboard=False,
            dashboard_host=LOOPBACK,
            _node_ip_address=LOOPBACK,
            log_to_driver=False,  # each run's log goes to <sweep>/logs/; the terminal shows the table
            object_store_memory=128 * 2**20,  # only small status dicts travel through it
        )
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved
    node_ip = ray.util.get_node_ip_address()
    if node_ip != LOOPBACK:
        ray.shutdown()
        raise SweepError(f"the embedded Ray cluster took the address {node_ip}, not {LOOPBACK} (Ray {ray.__version__}); "
                         "refusing to run it reachable from the network: start a cluster with `ray start` and "
                         "pass --address")
    return ray


def prepare_mlflow(sweep: Sweep) -> None:
    """Create the MLflow store and experiment once, here, before the tasks start: runs starting together
    would otherwise race to create the SQLite schema ("duplicate column") or the experiment."""
    if os.environ.get("DIAMOND_MLFLOW", "").lower() in {"0", "false", "off"} or not sweep.tracking_uri:
        return
    from diamond_kedro.reporting import tracked_experiment

    location = sweep.artifact_location
    if location:  # as the MLflow hook does, relative to the project
        path = Path(location)
        location = (path if path.is_absolute() else Path(sweep.project) / path).resolve().as_uri()
    tracked_experiment(sweep.tracking_uri, sweep.experiment_name, location)  # a `kedro run` may be creating it too


def run_sweep(sweep: Sweep, args: argparse.Namespace) -> int:
    """Drive the sweep as its one driver: the sweep folder's lock (``utils.run_lock``) is held from before
    the first status is read until the end, so a second driver fails at once, naming this one, instead of
    resetting its running cells."""
    from diamond_kedro.utils.run_lock import FolderLock, FolderLockError

    try:
        lock = FolderLock(sweep.folder, "sweep").acquire()
    except FolderLockError as exc:
        raise SweepError(str(exc)) from None
    try:
        return _run_sweep(sweep, args)
    finally:
        lock.release()


def foreign_runs(sweep: Sweep) -> list[Path]:
    """Run folders of this sweep's cells that the sweep never started: a run of the same key made by hand
    (or by another sweep of the same name elsewhere). A cell the sweep started has a status written by its
    task (``attempt`` >= 1) before the task touched the run folder."""
    out = []
    for game, seed in sweep.cells:
        run = sweep.run_folder(game, seed)
        status = read_status(sweep.status_path(game, seed))
        if run.is_dir() and any(run.iterdir()) and (status is None or status.attempt < 1):
            out.append(run)
    return out


def live_statuses(sweep: Sweep) -> list[CellStatus]:
    """The cells' statuses, with "running" replaced by "stale" where nothing runs them any more: no driver
    holds the sweep's lock, or the cell's worker was on this host and its pid is gone."""
    import socket

    from diamond_kedro.utils.run_lock import is_locked, pid_alive

    statuses = sweep.statuses()
    driver_alive = is_locked(sweep.folder)
    for s in statuses:
        if s.state != "running":
            continue
        worker_gone = s.host == socket.gethostname() and s.pid > 0 and not pid_alive(s.pid)
        if not driver_alive or worker_gone:
            s.state = "stale"
            s.error = "left running by a driver that is gone" if not driver_alive else f"worker pid {s.pid} is gone"
    return statuses


def _run_sweep(sweep: Sweep, args: argparse.Namespace) -> int:
    from diamond_kedro.sweep.task import train_cell

    foreign = foreign_runs(sweep)
    if foreign and not getattr(args, "adopt", False):
        raise SweepError(
            f"{len(foreign)} run folder(s) of this sweep's cells were not started by it, e.g. {foreign[0]}: "
            f"pass --adopt to continue them in the sweep, or choose another --name"
        )

    previous = Sweep.load(sweep.folder) if (sweep.folder / "sweep.json").is_file() else None
    if previous is not None:  # the same sweep again, maybe with more games or seeds: keep all cells
        sweep.games = previous.games + [g for g in sweep.games if g not in previous.games]
        sweep.seeds = sorted(set(previous.seeds) | set(sweep.seeds))
    sweep.folder.mkdir(parents=True, exist_ok=True)
    sweep.save()
    for game, seed in sweep.cells:
        status = read_status(sweep.status_path(game, seed))
        if status is not None and status.state in ("running", "failed"):
            _mark(sweep, game, seed, "pending")  # a previous driver's leftovers: this one owns the cell now

    prepare_mlflow(sweep)
    ray = _init_ray(args)
    env_vars = {"MLFLOW_TRACKING_URI": sweep.tracking_uri or "", "KEDRO_DISABLE_TELEMETRY": "1", "DO_NOT_TRACK": "1",
                "RAY_USAGE_STATS_ENABLED": "0"}
    task = ray.remote(train_cell).options(
        num_cpus=args.cpus_per_run, num_gpus=args.gpus_per_run, max_retries=args.max_retries, retry_exceptions=False
    )
    queue = list(sweep.cells)
    running: dict[Any, tuple[str, int]] = {}
    limit = args.max_concurrent or len(queue)
    table = Table()
    failed = 0
    try:
        while queue or running:
            while queue and len(running) < limit:
                game, seed = queue.pop(0)
                running[task.remote(sweep, game, seed, env_vars)] = (game, seed)
            done, _ = ray.wait(list(running), num_returns=1, timeout=1.0)
            for ref in done:
                game, seed = running.pop(ref)
                try:
                    ray.get(ref)
                except Exception as exc:  # the run raised, or its worker died more than --max-retries times
                    failed += 1
                    status = read_status(sweep.status_path(game, seed))
                    if status is None or status.state != "failed":  # the task could not say why itself
                        cause = getattr(exc, "cause", None) or exc
                        msg = str(cause).strip().splitlines()
                        _mark(sweep, game, seed, "failed", f"{type(cause).__name__}: {msg[0] if msg else ''}")
            table.show(format_table(sweep.statuses()))
    finally:
        ray.shutdown()
    table.show(format_table(sweep.statuses()))
    print(f"sweep {sweep.name}: statuses in {sweep.folder / 'cells'}, logs in {sweep.folder / 'logs'}")
    if not args.no_report and failed < len(sweep.cells):
        run_report(sweep)
    return 1 if failed else 0


def run_report(sweep: Sweep) -> None:
    """The ``report`` pipeline over this sweep's runs (``report.run_names = [NAME]``)."""
    from kedro.framework.session import KedroSession

    os.environ["MLFLOW_TRACKING_URI"] = sweep.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI", "")
    out = Path(sweep.project) / "data" / "08_reporting" / sweep.name
    params = merge(sweep.params, {"report": {"run_names": [sweep.name], "output_dir": str(out),
                                             "mlflow_run_name": f"report_{sweep.name}"}})
    os.chdir(sweep.project)
    with KedroSession.create(Path(sweep.project), env=sweep.env, runtime_params=params) as session:
        session.run(pipeline_names=["report"])
    print(f"report of sweep {sweep.name}: {out} (MLflow run report_{sweep.name})")


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    from diamond_kedro.config import ConfigError

    try:
        if args.status:
            sweep = Sweep.load(resolve_sweep(args, need_cells=False).folder)
            print(format_table(live_statuses(sweep)))
            return 0
        if not args.games or not args.seeds:
            raise SweepError("--games and --seeds are required (or --status)")
        if args.max_concurrent is not None and args.max_concurrent < 1:
            raise SweepError(f"--max-concurrent must be >= 1, got {args.max_concurrent}")
        if args.cpus_per_run <= 0 or args.gpus_per_run < 0 or args.max_retries < 0:
            raise SweepError("--cpus-per-run must be > 0, --gpus-per-run and --max-retries >= 0")
        return run_sweep(resolve_sweep(args, need_cells=True), args)
    except (SweepError, ConfigError) as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        print(f"{PROG}: error: {lines[0]} {'; '.join(lines[1:])}".rstrip(), file=sys.stderr)  # one line
        return 2
