"""Kedro hooks: parameter validation before any work, the training runs as session resources
(``RunSessionHook``), and MLflow tracking at the edge.

Why not kedro-mlflow: it opens one MLflow run per ``kedro run``, while a DIAMOND training run spans many
``kedro run --pipelines=atari_epoch`` calls (one per epoch, resumable). We want one MLflow run per training
run (game, seed, name) that every epoch resumes, with metrics at ``step = epoch``. That takes ~100 lines.

Which runs a pipeline trains is read from its nodes' tags (``atari_train``, ``csgo_train``,
``static_world_model_train``: ``io.run_session``); their parameter sections are validated, as is any section a
node takes (``params:csgo`` of ``csgo_ingest``). CS:GO training pipelines get one MLflow run per training run ``csgo_<name>`` in the experiment
``csgo_experiment_name`` (default ``diamond-csgo``), keyed by the same tag as the Atari runs.
Static world models (tag ``static_world_model_train``) likewise, one MLflow run
per ``<dataset.name>_<run.name>`` in the experiment ``diamond-<dataset.name>``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from kedro.framework.hooks import hook_impl

from diamond_kedro.config import parse_config
from diamond_kedro.distributed import env_rank
from diamond_kedro.io import run_session
from diamond_kedro.io.run_session import training_runs
from diamond_kedro.reporting import (  # noqa: F401  (store_lock, tracking_client: also this module's names)
    EpochReport,
    add_sink,
    mlflow_experiment_id,
    remove_sink,
    store_lock,
    tracking_client,
)

log = logging.getLogger(__name__)

RUN_KEY_TAG = "diamond.run_key"
# Registered model names: diamond-<Game> (Atari agents), diamond-csgo (CS:GO world models).
MODEL_NAME_PREFIX = "diamond-"
_CONFIG_SECTIONS = ("env.", "denoiser.", "rew_end_model.", "actor_critic.", "upsampler.")


def registered_model_name(report: EpochReport) -> str:
    if report.kind == "csgo":
        return f"{MODEL_NAME_PREFIX}csgo"
    from diamond_kedro.envs.atari import game_short_name

    game = report.params.get("env.game") or report.run_key.split("_seed")[0]
    return MODEL_NAME_PREFIX + game_short_name(str(game))  # diamond-Breakout, diamond-Catch


def register_checkpoints(client: Any, run_id: str, report: EpochReport) -> list[str]:
    """One model-registry version per checkpoint the report logged (artifact folder ``checkpoints``), its
    source ``runs:/<run id>/checkpoints/<file>``, tagged with game, epoch and run key, the models' config
    (JSON) as description. A report emitted twice (crash recovery) does not add a second version.
    Returns the new versions' numbers."""
    import json

    from mlflow.exceptions import MlflowException

    files = [Path(p) for folder, p in report.artifacts if folder == "checkpoints" and Path(p).exists()]
    if not files:
        return []
    name = registered_model_name(report)
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description="DIAMOND checkpoints, one version per saved checkpoint")
    known = {
        (v.tags or {}).get("artifact_path")
        for v in client.search_model_versions(f"name='{name}' and run_id='{run_id}'")
    }
    config = {k: v for k, v in report.params.items() if k.startswith(_CONFIG_SECTIONS)}
    versions = []
    for path in files:
        artifact_path = f"checkpoints/{path.name}"
        if artifact_path in known:
            continue
        tags = {"game": name.removeprefix(MODEL_NAME_PREFIX), "epoch": str(report.epoch), "run_key": report.run_key,
                "artifact_path": artifact_path}
        mv = client.create_model_version(name, source=f"runs:/{run_id}/{artifact_path}", run_id=run_id, tags=tags,
                                         description=json.dumps(config, sort_keys=True, default=str))
        versions.append(str(mv.version))
        log.info("MLflow: registered %s version %s (%s)", name, mv.version, artifact_path)
    return versions


CSGO_PARAMS = "params:csgo"
STATIC_PARAMS = "params:static_world_model"


def _families(pipeline: Any) -> set[str]:
    """The kinds of run ``pipeline`` trains (from its nodes' tags: ``io.run_session``)."""
    return {spec.family for spec in training_runs(pipeline)}


def _validate(pipeline: Any, catalog: Any) -> None:
    families = _families(pipeline)
    if "atari" in families or "parameters" in pipeline.inputs():
        parse_config(catalog.load("parameters"))
    if "csgo" in families or CSGO_PARAMS in pipeline.inputs():
        from diamond_kedro.csgo.config import parse_csgo_config

        parse_csgo_config(catalog.load(CSGO_PARAMS))
    if "static_world_model" in families or STATIC_PARAMS in pipeline.inputs():
        from diamond_kedro.datasets.config import parse_static_config

        parse_static_config(catalog.load(STATIC_PARAMS))


class ValidateParametersHook:
    """Fail before the first node runs when a parameter is missing, unknown or out of range."""

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        _validate(pipeline, catalog)


class RunSessionHook:
    """The training runs of a session are resources (``io.run_session``): declared before the first node (from
    the nodes' tags and namespaces), opened by the first dataset that needs one, closed after the last node or
    on an error. Also binds the context's parameters, so that datasets outside a training session (a
    notebook's ``catalog.load("replay_train")``) find the committed run folder."""

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        try:
            run_session.bind_parameters(context.params)
        except Exception:  # a broken parameter file fails the run later, with Kedro's own message
            log.debug("parameters not bound", exc_info=True)

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        specs = training_runs(pipeline)
        if specs:
            run_session.expect(specs, lambda: catalog.load("parameters"))

    @hook_impl
    def after_pipeline_run(self) -> None:
        run_session.close_all()

    @hook_impl
    def on_pipeline_error(self) -> None:
        run_session.close_all()


class MlflowTrackingHook:
    """One MLflow run per training run; each committed epoch's ``EpochReport`` is logged at step = epoch.

    Reports carry their run key, so one ``kedro run`` may feed several training runs (namespaced copies of
    ``atari_epoch``, one per game): each lands in its own MLflow run, found by the ``diamond.run_key`` tag
    or created (with the run's parameters) at its first report.
    """

    def __init__(self) -> None:
        self._conf: dict[str, Any] = {}
        self._client: Any = None
        self._run_ids: dict[str, str] = {}

    @property
    def conf(self) -> dict[str, Any]:
        """The merged ``mlflow*.yml`` of the active Kedro environment."""
        return self._conf

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        try:
            self._conf = dict(context.config_loader["mlflow"])
        except KeyError:
            self._conf = {}

    def _enabled(self) -> bool:
        if env_rank() != 0:  # under torchrun only rank 0 logs (diamond_kedro.distributed)
            return False
        if os.environ.get("DIAMOND_MLFLOW", "").lower() in {"0", "false", "off"}:
            return False
        return bool(self._conf.get("enabled", True))

    def tracking_uri(self) -> str:
        return os.environ.get("MLFLOW_TRACKING_URI") or self._conf.get("tracking_uri", "sqlite:///mlflow.db")

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        if not self._enabled() or not _families(pipeline):
            return
        self._client = tracking_client(self.tracking_uri())
        self._run_ids = {}
        add_sink(self._log)

    def _experiment_id(self, kind: str) -> str:
        if kind == "atari":
            name = self._conf.get("experiment_name", "diamond-atari")
        else:  # csgo, or a static world model's dataset name
            name = self._conf.get(f"{kind}_experiment_name", f"diamond-{kind}")
        location = self._conf.get("artifact_location")
        location = Path(location).resolve().as_uri() if location else None
        with store_lock(self.tracking_uri()):  # one creator among processes starting together
            return mlflow_experiment_id(self._client, name, location)  # tagged for MLflow's model-training view

    def _run_id(self, report: EpochReport) -> str:
        """The MLflow run of ``report.run_key``: resumed if it exists, else created; either way it ends up
        with the run's params (a process killed between creating the run and uploading them left a run
        without them, or with a part: the missing ones are uploaded on resume)."""
        key = report.run_key
        if key in self._run_ids:
            return self._run_ids[key]
        from mlflow.entities import Param

        experiment_id = self._experiment_id(report.kind)
        found = self._client.search_runs(
            [experiment_id], filter_string=f"tags.`{RUN_KEY_TAG}` = '{key}'", max_results=1
        )
        if found:
            run_id, have = found[0].info.run_id, found[0].data.params
            self._client.update_run(run_id, status="RUNNING")
            log.info("MLflow: resuming run %s (%s)", key, run_id)
        else:
            run_id, have = self._client.create_run(experiment_id, run_name=key, tags={RUN_KEY_TAG: key}).info.run_id, {}
            log.info("MLflow: new run %s (%s)", key, run_id)
        params = [Param(k, str(v)[:6000]) for k, v in report.params.items() if k not in have]
        for i in range(0, len(params), 90):  # MLflow caps one batch at 100 params
            self._client.log_batch(run_id, params=params[i : i + 90])
        self._run_ids[key] = run_id
        return run_id

    def _log(self, report: EpochReport) -> None:
        run_id = self._run_id(report)
        report.log_to_mlflow(self._client, run_id)
        if self._conf.get("register_models", True):
            register_checkpoints(self._client, run_id, report)

    def _close(self, status: str) -> None:
        if self._client is None:
            return
        remove_sink(self._log)
        for run_id in self._run_ids.values():
            self._client.set_terminated(run_id, status=status)
        self._client, self._run_ids = None, {}

    @hook_impl
    def after_pipeline_run(self) -> None:
        self._close("FINISHED")

    @hook_impl
    def on_pipeline_error(self) -> None:
        self._close("FAILED")
