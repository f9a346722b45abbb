"""Build the documentation site (``mkdocs build --strict``) as a user's ``make docs-build`` does."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def docs_env(project: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(KEDRO_DISABLE_TELEMETRY="1", DO_NOT_TRACK="1", NO_MKDOCS_2_WARNING="1", DISABLE_MKDOCS_2_WARNING="true",
               PYTHONPATH=os.pathsep.join([str(project / "src"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
               PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}")
    return env


def mkdocs_build(project: Path, site: Path, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [str(BIN / "mkdocs"), "build", "--strict", "--config-file", str(project / "mkdocs.yml"), "--site-dir", str(site)]
    proc = subprocess.run(cmd, cwd=project, env=docs_env(project), capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return proc


def copy_docs_project(dest: Path) -> Path:
    """What the site is built from: mkdocs.yml, docs/, the package (reference), conf/ and the record helper."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(PROJECT / "mkdocs.yml", dest / "mkdocs.yml")
    shutil.copytree(PROJECT / "docs", dest / "docs")
    shutil.copytree(PROJECT / "src", dest / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copytree(PROJECT / "conf", dest / "conf", ignore=shutil.ignore_patterns("local"))
    (dest / "benchmarks").mkdir()
    shutil.copy2(PROJECT / "benchmarks" / "_record.py", dest / "benchmarks" / "_record.py")
    return dest


@pytest.fixture(scope="session")
def built_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    site = tmp_path_factory.mktemp("site")
    mkdocs_build(PROJECT, site)
    return site
