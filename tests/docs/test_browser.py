"""Pictures a person looks at, from a real browser: MLflow's page of a ci run (its metrics chart and its
real-vs-imagined video) and kedro-viz's graphs of the ``atari_epoch`` and ``csgo`` pipelines with their datasets
(``kedro viz build``: no run needed), rendered by headless Chromium.

Playwright drives the system's Chromium (``make setup`` installs it with apt when it is missing; Playwright's
own browser download is not needed). The servers listen on 127.0.0.1 only, on free ports. With
``DIAMOND_SCREENSHOTS=docs/images`` the screenshots are written there (they illustrate the docs); otherwise
into the test's temporary folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pipelines.conftest import BIN, PROJECT, copy_project, kedro_run, project_env

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
RUN_KEY = "Breakout_seed0_ci"


def chromium() -> str:
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    raise AssertionError("no Chromium found (tried " + ", ".join(CHROMIUM_NAMES) + "): `make setup` installs it "
                         "with `apt-get install -y chromium` when run as root; elsewhere install it by hand")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def server(cmd: list[str], cwd: Path, port: int, log: Path, timeout: float = 120) -> Iterator[str]:
    """Start ``cmd`` (a web server on 127.0.0.1:port), wait until it accepts connections, stop it after."""
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, env=project_env(), stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"{' '.join(cmd)} exited ({proc.returncode}):\n{log.read_text()[-4000:]}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() > deadline:
                raise AssertionError(f"{' '.join(cmd)} did not listen on 127.0.0.1:{port} in {timeout} s:\n"
                                     f"{log.read_text()[-4000:]}")
            time.sleep(0.5)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def ci_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project copy with one ci epoch that evaluates (so the run has its real-vs-imagined video)."""
    project = copy_project(tmp_path_factory.mktemp("browser_project"))
    kedro_run(project, "--pipelines=atari_epoch", "--env=ci", "--params=evaluate.every=1")
    return project


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium(), headless=True, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


def shots_dir(tmp_path: Path) -> Path:
    wanted = os.environ.get("DIAMOND_SCREENSHOTS")
    out = (PROJECT / wanted) if wanted and not Path(wanted).is_absolute() else Path(wanted) if wanted else tmp_path
    out.mkdir(parents=True, exist_ok=True)
    return out


def _run_ids(project: Path) -> tuple[str, str]:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()], filter_string=f"tags.`diamond.run_key` = '{RUN_KEY}'")
    assert len(runs) == 1, f"expected one MLflow run for {RUN_KEY}, got {len(runs)}"
    run = runs[0]
    # The UI shows an untagged experiment under "GenAI"; the project's hook tags its experiments for the
    # model-training view. Set it here too, so this test checks the view whatever the hook does.
    client.set_experiment_tag(run.info.experiment_id, "mlflow.experimentKind", "custom_model_development")
    return run.info.experiment_id, run.info.run_id


def _video_artifact(project: Path, run_id: str) -> str:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    stack, found = [""], []
    while stack:
        for f in client.list_artifacts(run_id, stack.pop() or None):
            (stack.append(f.path) if f.is_dir else found.append(f.path))
    videos = [p for p in found if p.endswith((".mp4", ".gif")) and "real_vs_imagined" in p]
    assert videos, f"the run logged no real-vs-imagined video; artifacts: {found}"
    return videos[0]


def test_mlflow_ui_shows_the_run_metrics_and_video(ci_project: Path, browser, tmp_path: Path) -> None:
    exp_id, run_id = _run_ids(ci_project)
    video = _video_artifact(ci_project, run_id)
    port = free_port()
    cmd = [str(BIN / "mlflow"), "ui", "--backend-store-uri", f"sqlite:///{ci_project / 'mlflow.db'}",
           "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    out = shots_dir(tmp_path)
    with server(cmd, ci_project, port, tmp_path / "mlflow.log") as url:
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        # MLflow 3.17 opens in its GenAI view (traces, judges); a user switches to "Model training" and opens
        # the experiment: its runs table lists the run
        page.goto(f"{url}/#/experiments")
        page.get_by_text("Model training", exact=True).first.click()
        page.get_by_text("diamond-atari", exact=True).first.click()
        page.wait_for_url("**/runs?**", timeout=60_000)
        assert "workflowType=machine_learning" in page.url, page.url
        page.get_by_text(RUN_KEY, exact=True).first.wait_for(timeout=60_000)
        page.screenshot(path=str(out / "mlflow_experiment_runs.png"))
        # the run's metrics: one chart per metric (section denoiser/train, chart loss_denoising), drawn by plotly
        page.goto(f"{url}/#/experiments/{exp_id}/runs/{run_id}/model-metrics")
        charts = page.locator(".js-plotly-plot, canvas, svg.main-svg")
        charts.first.wait_for(timeout=60_000)
        assert charts.count() > 0
        body = page.inner_text("body")
        assert "denoiser/train" in body and "actor_critic/train" in body, body[:2000]
        page.wait_for_timeout(1500)  # let the charts finish drawing before the picture
        page.screenshot(path=str(out / "mlflow_run_metrics.png"))
        # the run's real | imagined | difference video, previewed in the artifact view
        page.goto(f"{url}/#/experiments/{exp_id}/runs/{run_id}/artifacts/{video}")
        page.get_by_text(Path(video).name, exact=True).first.click()  # select it in the artifact tree
        media = page.locator("video, img[src*='get-artifact'], img[src^='blob:'], img[src*='real_vs_imagined']")
        media.first.wait_for(timeout=60_000)
        assert media.first.evaluate("e => e.tagName === 'VIDEO' || e.naturalWidth > 0")
        page.wait_for_timeout(1000)
        page.screenshot(path=str(out / "mlflow_run_video.png"))
        page.close()
    for name in ("mlflow_run_metrics.png", "mlflow_run_video.png"):
        assert (out / name).stat().st_size > 10_000


@pytest.fixture(scope="module")
def viz_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project copy with its kedro-viz site built (``kedro viz build`` reads the pipelines and the catalog;
    it needs no run)."""
    project = copy_project(tmp_path_factory.mktemp("viz_project"))
    build = subprocess.run([str(BIN / "kedro"), "viz", "build"], cwd=project, env=project_env(),
                           capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    assert (project / "build" / "index.html").exists(), \
        list((project / "build").iterdir()) if (project / "build").exists() else "no build/"
    return project


def _viz_settings(pipeline_id: str, expand: bool) -> str:
    """kedro-viz's saved settings (its localStorage key ``KedroViz``): the pipeline, datasets and nodes shown
    (parameters hidden), raw names, the feature tour and the minimap off, modular pipelines expanded or not."""
    state = {"node": {"disabled": {}}, "nodeType": {"disabled": {"parameters": True, "task": False, "data": False}},
             "pipeline": {"active": pipeline_id}, "layer": {"visible": True}, "tag": {"enabled": {}},
             "textLabels": True, "visible": {"code": False, "graph": True, "miniMap": False, "sidebar": True,
                                             "slicing": True, "traceback": False},
             "theme": "dark", "isPrettyName": False, "showFeatureHints": False, "showDatasetPreviews": True,
             "flags": {"sizewarning": True}, "expandAllPipelines": expand, "orientation": "vertical",
             "featureHintStep": 0}
    return f"localStorage.setItem('KedroViz', {json.dumps(json.dumps(state))})"


def _viz_graph(browser, url: str, pipeline_id: str, shot: Path, expand: bool = False) -> list[str]:
    """Open ``pipeline_id``'s flowchart, screenshot it into ``shot``, return the labels of its boxes."""
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    try:
        context.add_init_script(_viz_settings(pipeline_id, expand))
        page = context.new_page()
        page.goto(f"{url}/?pipeline_id={pipeline_id}")
        page.locator(".pipeline-node").first.wait_for(timeout=60_000)
        page.wait_for_timeout(1500)  # let the layout settle before the picture
        # the labels are SVG text: textContent (innerText is empty for SVG)
        names = [t.text_content() or "" for t in page.locator(".pipeline-node__text").all()]
        page.screenshot(path=str(shot))
        return names
    finally:
        context.close()


# The map of the data: one Atari epoch's nodes and the datasets between them (conf/base/catalog.yml)
ATARI_EPOCH_NODES = {"collect", "train_denoiser", "train_rew_end_model", "train_actor_critic", "evaluate",
                     "commit_epoch"}
ATARI_EPOCH_DATASETS = {
    "replay_train", "replay_test", "collector_state", "run_state", "denoiser", "rew_end_model", "actor_critic",
    "replay_train_collected", "collector_state_next", "denoiser_trained", "rew_end_model_trained",
    "actor_critic_trained", "replay_test_evaluated", "train_dataset_metrics", "denoiser_metrics",
    "rew_end_model_metrics", "actor_critic_metrics", "evaluate_metrics", "media", "epoch_metrics",
}


def test_kedro_viz_shows_the_pipeline_graph(viz_project: Path, browser, tmp_path: Path) -> None:
    site = viz_project / "build"
    port = free_port()
    cmd = [str(BIN / "python"), "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(site)]
    out = shots_dir(tmp_path)
    with server(cmd, viz_project, port, tmp_path / "viz.log") as url:
        names = _viz_graph(browser, url, "atari_epoch", out / "kedro_viz_atari_epoch.png")
        # every phase is a node and every artefact a dataset box: the paper's loop, not one run object
        assert set(names) == ATARI_EPOCH_NODES | ATARI_EPOCH_DATASETS, sorted(names)
        assert not any(n.startswith("run_") and n != "run_state" for n in names), names  # no run_opened, ...
        # the static family: Atari's world-model training nodes under the csgo namespace, on csgo_dataset
        csgo = _viz_graph(browser, url, "csgo", out / "kedro_viz_csgo.png", expand=True)
        assert {"train_denoiser", "train_upsampler", "evaluate_world_model", "commit_epoch", "csgo_dataset",
                "csgo.denoiser", "csgo.denoiser_trained", "csgo.upsampler_trained", "csgo.media"} <= set(csgo), csgo
    for name in ("kedro_viz_atari_epoch.png", "kedro_viz_csgo.png"):
        assert (out / name).stat().st_size > 10_000
