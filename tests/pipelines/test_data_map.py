"""The catalog is the map of the data: the epoch's DAG is Algorithm 1 over named datasets, partial runs and
notebook loads work on a committed run, and the static-dataset family goes through the same training nodes.

The DAG checks read the pipeline objects (inputs, outputs, node functions), never node names alone."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from kedro.pipeline import Pipeline

from diamond_kedro.io.run_datasets import RunArtefactDataset
from diamond_kedro.io.run_session import ATARI_TAG, CSGO_TAG, STATIC_TAG, RunSpec, training_runs
from diamond_kedro.pipelines import atari_epoch, atari_games, csgo, csgo_ingest, static_world_model
from diamond_kedro.pipelines import static_world_model_ingest, train_rew_end_model
from diamond_kedro.pipelines.atari_nodes import collect, evaluate, train_actor_critic
from diamond_kedro.pipelines.commit import commit_epoch
from diamond_kedro.pipelines.world_model import train_world_model_component
from diamond_kedro.replay.store import ReplayStore
from diamond_kedro.utils.state_file import load_state_file

from .conftest import PROJECT, kedro_run, project_env

RUN = Path("data/runs/Breakout_seed0_ci")


def _node(p: Pipeline, func, output_suffix: str = ""):
    """The one node of ``p`` running ``func`` (and, if given, writing a dataset ending in ``output_suffix``)."""
    found = [n for n in p.nodes if n.func is func and any(o.endswith(output_suffix) for o in n.outputs)]
    assert len(found) == 1, (func.__name__, output_suffix, [n.name for n in found])
    return found[0]


def _catalog_datasets(p: Pipeline) -> dict[str, object]:
    """Every dataset of ``p`` as the project's catalog resolves it (conf/base/catalog.yml, factories included)."""
    from kedro.config import OmegaConfigLoader
    from kedro.io import DataCatalog

    conf = OmegaConfigLoader(str(PROJECT / "conf"), base_env="base", default_run_env="local")
    catalog = DataCatalog.from_config(conf["catalog"])
    return {name: catalog.get(name) for name in p.datasets() if not name.startswith("params:") and name != "parameters"}


def test_the_atari_epoch_dag_is_algorithm_1() -> None:
    epoch = atari_epoch.create_pipeline()
    c = _node(epoch, collect)
    td = _node(epoch, train_world_model_component, "denoiser_trained")
    tr = _node(epoch, train_world_model_component, "rew_end_model_trained")
    ta = _node(epoch, train_actor_critic)
    ev = _node(epoch, evaluate)
    cm = _node(epoch, commit_epoch)

    # collect plays the committed actor-critic from the committed collector state into the committed replay
    assert set(c.inputs) == {"actor_critic", "collector_state", "replay_train"}
    grown = [o for o in c.outputs if o.startswith("replay_train")]
    assert len(grown) == 1
    # both world-model components train on what collect wrote
    assert grown[0] in td.inputs and grown[0] in tr.inputs and "denoiser" in td.inputs and "rew_end_model" in tr.inputs
    # the actor-critic trains in imagination: both trained world-model components, contexts from the replay
    denoiser_trained = next(o for o in td.outputs if o.startswith("denoiser_"))
    rew_end_trained = next(o for o in tr.outputs if o.startswith("rew_end_model_"))
    assert {denoiser_trained, rew_end_trained, grown[0], "actor_critic"} <= set(ta.inputs)
    # evaluation reads the trained actor-critic (and the world model, for its fidelity)
    actor_critic_trained = next(o for o in ta.outputs if o.startswith("actor_critic_") and not o.endswith("metrics"))
    assert {actor_critic_trained, denoiser_trained, rew_end_trained, "replay_test"} <= set(ev.inputs)
    # the commit reads the run state and every output of every other node: the epoch is committed whole,
    # and each committed input of the epoch has its new version among them (the loop closes there)
    produced = {o for n in epoch.nodes if n is not cm for o in n.outputs}
    assert set(cm.inputs) == produced | {"run_state"}
    assert {"replay_train", "replay_test", "collector_state", "denoiser", "rew_end_model", "actor_critic"} <= {
        o.rsplit("_", 1)[0] for o in produced
    }
    assert cm.outputs == ["epoch_metrics"]
    # topological order is the paper's
    order = [n for n in epoch.nodes]
    assert order.index(c) < order.index(td) < order.index(ta) < order.index(ev) < order.index(cm)
    assert order.index(tr) < order.index(ta)


def test_every_artefact_is_a_run_dataset_in_the_catalog() -> None:
    for p in (atari_epoch.create_pipeline(), csgo.create_pipeline(), static_world_model.create_pipeline(),
              atari_games.create_pipeline().only_nodes_with_namespaces(["pong"])):
        datasets = _catalog_datasets(p)
        reports = {n for n in datasets if n.endswith("epoch_metrics")}
        assert len(reports) == 1  # the commit's report: in memory, for `kedro run --pipelines=atari`
        assert all(isinstance(d, RunArtefactDataset) for n, d in datasets.items() if n not in reports), {
            n: type(d).__name__ for n, d in datasets.items()
        }


def test_the_static_family_goes_through_the_same_training_nodes_fed_by_its_ingest() -> None:
    epoch = atari_epoch.create_pipeline()
    atari_denoiser = _node(epoch, train_world_model_component, "denoiser_trained")
    for train, ingest, tag in ((csgo, csgo_ingest, CSGO_TAG), (static_world_model, static_world_model_ingest, STATIC_TAG)):
        p = train.create_pipeline()
        denoiser = _node(p, train_world_model_component, "denoiser_trained")
        upsampler = _node(p, train_world_model_component, "upsampler_trained")
        assert denoiser.func is atari_denoiser.func and upsampler.func is atari_denoiser.func
        assert _node(p, commit_epoch).func is _node(epoch, commit_epoch).func
        # the data input of the shared training nodes is the ingest pipeline's output (input mapping)
        (dataset,) = ingest.create_pipeline().outputs() & set(denoiser.inputs)
        assert dataset in upsampler.inputs
        assert all(tag in n.tags for n in p.nodes)
        assert {s.family for s in training_runs(p)} == {tag.removesuffix("_train")}
    assert training_runs(epoch) == [RunSpec(None, "atari")] and all(ATARI_TAG in n.tags for n in epoch.nodes)


def test_from_nodes_on_a_committed_run_commits_and_a_notebook_loads_the_replay(project: Path) -> None:
    kedro_run(project, "--pipelines=atari_epoch", "--env=ci")
    state1 = load_state_file(project / RUN / "checkpoints" / "state.pt")
    steps1 = ReplayStore(project / RUN / "replay" / "train").num_steps

    # a partial run of the epoch: no collection, no denoiser training; the rest, then the commit
    kedro_run(project, "--pipelines=atari_epoch", "--env=ci", "--from-nodes=train_rew_end_model")
    state2 = load_state_file(project / RUN / "checkpoints" / "state.pt")
    c1, c2 = state1["counters"], state2["counters"]
    assert c2["epoch"] == 2
    assert c2["num_batch_train"]["denoiser"] == c1["num_batch_train"]["denoiser"]  # train_denoiser did not run
    assert c2["num_batch_train"]["rew_end_model"] > c1["num_batch_train"]["rew_end_model"]
    assert c2["num_batch_train"]["actor_critic"] > c1["num_batch_train"]["actor_critic"]
    assert c2["env_steps"] == c1["env_steps"] == steps1  # collect did not run
    assert ReplayStore(project / RUN / "replay" / "train").num_steps == steps1
    assert not (project / RUN / "staging").exists()  # committed: nothing left staged
    metrics = json.loads((project / RUN / "metrics.json").read_text())
    assert metrics["epoch"] == 2 and "rew_end_model/train/loss_total" in metrics
    assert "denoiser/train/loss_denoising" not in metrics  # this epoch did not train it

    # a notebook cell (`kedro ipython` gives `catalog`): the committed artefacts, read-only
    cell = (
        "from kedro.framework.session import KedroSession\n"
        "from kedro.framework.startup import bootstrap_project\n"
        "bootstrap_project('.')\n"
        "with KedroSession.create(env='ci') as session:\n"
        "    catalog = session.load_context().catalog\n"
        "    store = catalog.load('replay_train')\n"
        "    denoiser = catalog.load('denoiser')\n"
        "    run_state = catalog.load('run_state')\n"
        "    print('RESULT', type(store).__name__, store.num_steps, type(denoiser.model).__name__,"
        " denoiser.num_updates, run_state['epoch'], sorted(catalog.load('rew_end_model_metrics'))[:1])\n"
    )
    out = subprocess.run([sys.executable, "-c", cell], cwd=project, env=project_env(), capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-4000:]
    line = next(x for x in out.stdout.splitlines() if x.startswith("RESULT"))
    kind, steps, model, updates, epoch, first_metric = line.split(" ", 6)[1:]
    assert (kind, int(steps), model, int(updates), int(epoch)) == (
        "ReplayStore", steps1, "Denoiser", c2["num_batch_train"]["denoiser"], 2)
    assert first_metric.startswith("['")  # the reward/end model's train metrics of the last epoch


def test_a_standalone_phase_pipeline_is_that_node_and_the_commit() -> None:
    p = train_rew_end_model.create_pipeline()
    assert [n.func for n in p.nodes] == [train_world_model_component, commit_epoch]
    assert "rew_end_model" in p.inputs() and "denoiser_trained" in p.inputs()  # read as committed
