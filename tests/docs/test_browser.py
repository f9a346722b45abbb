"""Pictures a person looks at, from a real browser: MLflow's page of a ci run (its metrics chart and its
real-vs-imagined video) and kedro-viz's pipeline graph, rendered by headless Chromium.

Playwright drives the system's Chromium (``make setup`` installs it with apt when it is missing; Playwright's
own browser download is not needed). The servers listen on 127.0.0.1 only, on free ports. With
``DIAMOND_SCREENSHOTS=docs/images`` the screenshots are written there (they illustrate the docs); otherwise
into the test's temporary folder.
"""

from __future__ import annotations

import contextlib
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


def test_kedro_viz_shows_the_pipeline_graph(ci_project: Path, browser, tmp_path: Path) -> None:
    build = subprocess.run([str(BIN / "kedro"), "viz", "build"], cwd=ci_project, env=project_env(),
                           capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    site = ci_project / "build"
    assert (site / "index.html").exists(), list(site.iterdir()) if site.exists() else "no build/"
    port = free_port()
    cmd = [str(BIN / "python"), "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(site)]
    out = shots_dir(tmp_path)
    with server(cmd, ci_project, port, tmp_path / "viz.log") as url:
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(f"{url}/?pipeline_id=atari_epoch")
        nodes = page.locator(".pipeline-node")
        nodes.first.wait_for(timeout=60_000)
        names = page.locator(".pipeline-node__text").all_inner_texts()
        assert nodes.count() >= 7, names
        page.wait_for_timeout(1500)
        page.screenshot(path=str(out / "kedro_viz_atari_epoch.png"))
        page.close()
    assert (out / "kedro_viz_atari_epoch.png").stat().st_size > 10_000
