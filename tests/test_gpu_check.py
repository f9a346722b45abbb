"""benchmarks/gpu_check.sh --device cpu: the GPU check's dry run completes offline (issue 21).

The lent GPU machines have no network: the script must install nothing from an index and import the
project from the working tree. Here the index is made unreachable (PIP_NO_INDEX, proxies to a closed
port) and a hand-made wheel stands in for the carried ones; the run must complete, write its files in a
new folder (leaving what is already in --out alone) and report every part."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def probe_wheel(folder: Path) -> Path:
    """A minimal pure-Python wheel (what gpu_wheels.sh would carry), installable offline."""
    folder.mkdir()
    path = folder / "gpu_check_probe-0.1-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("gpu_check_probe/__init__.py", "VALUE = 42\n")
        z.writestr("gpu_check_probe-0.1.dist-info/METADATA", "Metadata-Version: 2.1\nName: gpu-check-probe\nVersion: 0.1\n")
        z.writestr("gpu_check_probe-0.1.dist-info/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr("gpu_check_probe-0.1.dist-info/RECORD", "")
    return path


def test_gpu_check_dry_run_completes_offline(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "gpu_check").mkdir(parents=True)
    (out / "gpu_check" / "earlier.txt").write_text("an earlier run's file")
    wheels = tmp_path / "wheels"
    probe_wheel(wheels)
    closed = "http://127.0.0.1:9"  # nothing listens on the discard port
    env = {
        **os.environ,
        "PIP_NO_INDEX": "1", "PIP_INDEX_URL": closed, "http_proxy": closed, "https_proxy": closed,
        "HTTP_PROXY": closed, "HTTPS_PROXY": closed, "PYTHONPATH": "", "OUT": str(tmp_path / "not-used"),
        "MLFLOW_TRACKING_URI": str(tmp_path / "mlruns"),
    }
    proc = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--device", "cpu", "--out", str(out),
         "--wheels", str(wheels), "--python", sys.executable],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert (out / "gpu_check" / "earlier.txt").read_text() == "an earlier run's file"  # nothing overwritten
    run_dir = out / "gpu_check_2"
    assert sorted(p.name for p in run_dir.iterdir()) == ["checks.log", "epoch.log", "gpu_check.json", "gpu_check.log", "setup.log"]
    assert "installing 1 wheels" in (run_dir / "setup.log").read_text()
    assert f"diamond_kedro from {ROOT / 'src'}" in (run_dir / "setup.log").read_text()  # the working tree, not an install
    data = json.loads((run_dir / "gpu_check.json").read_text())
    parts = data["run"]["parts"]
    assert {k: v["status"] for k, v in parts.items()} == {"setup": "0", "checks": "0", "resume": "0", "models": "skipped", "epoch": "0"}
    assert data["run"]["total_s"] <= 8 * 60
    assert data["checks"]["failed"] == [] and data["resume"]["failed"] == [] and data["epoch"]["failed"] == []
    dtypes = data["checks"]["checks"]["recurrent states carried under bf16 autocast are fp32"]["dtypes"]
    assert set(dtypes.values()) == {"torch.float32"}
    assert data["epoch"]["epoch"]["paper_epoch_s"] > 0
    assert not (tmp_path / "not-used").exists()  # --out wins over $OUT
