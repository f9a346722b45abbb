"""The pipeline registry lists every pipeline package (the docs' pipeline table is generated from it)."""

from __future__ import annotations

import subprocess
import sys

from tests.pipelines.conftest import PROJECT, project_env


def test_every_pipeline_package_is_registered() -> None:
    packages = {p.name for p in (PROJECT / "src/diamond_kedro/pipelines").iterdir() if (p / "__init__.py").exists()}
    assert {"static_world_model", "static_world_model_ingest", "csgo", "csgo_ingest"} <= packages
    code = ("from kedro.framework.startup import bootstrap_project; bootstrap_project('.'); "
            "from diamond_kedro.pipeline_registry import register_pipelines; print('PIPELINES', *sorted(register_pipelines()))")
    env = project_env()
    env["PYTHONPATH"] = str(PROJECT / "src")
    out = subprocess.run([sys.executable, "-c", code], cwd=PROJECT, env=env, capture_output=True, text=True, check=True)
    listed = [line for line in out.stdout.splitlines() if line.startswith("PIPELINES ")][-1].split()[1:]
    assert set(listed) == packages | {"__default__"}
