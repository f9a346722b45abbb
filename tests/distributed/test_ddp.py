"""Two-process gloo DDP (torchrun) equals one process with the same global batch.

A ci run's first epoch is collected once; then ``ddp_worker.py`` collects epoch 2's 50 steps (rank 0; the
other rank re-reads the store) and trains the ``denoiser`` and ``rew_end_model`` for 3 steps each (lr 1e-3,
no warm-up, global batch 4), alone and as 2 torchrun ranks of 2 rows each.
Adam's update is nearly sign(gradient) * lr, so a wrong shard or a wrong gradient average shows up in
almost every parameter; as a check that the comparison can fail, a one-process run on 2 rows only
(rank 0's half) must end elsewhere.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from diamond_kedro.config import parse_config
from diamond_kedro.training.run import AtariRun

from ..profiles import profile_parameters
from ..isolation import loopback_only
from diamond_kedro.utils.state_file import load_state_file

WORKER = Path(__file__).with_name("ddp_worker.py")
BIN = Path(sys.executable).parent
SRC = Path(__file__).resolve().parents[2] / "src"


def _params(root: Path, batch_size: int) -> dict:
    p = profile_parameters("ci")
    p["run"].update(root=str(root), tune_malloc=False)
    for name in ("denoiser", "rew_end_model"):
        p[name]["training"].update(lr=1e-3, warmup_steps=0, batch_size=batch_size, steps_first_epoch=3)
    return p


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = f"{SRC}{os.pathsep}{env.get('PYTHONPATH', '')}"
    return env


def _train(cmd: list[str], root: Path, out: Path, batch_size: int) -> dict[str, dict[str, torch.Tensor]]:
    full = [*cmd, str(WORKER), str(root), str(out), json.dumps(_params(root.parent, batch_size))]
    proc = subprocess.run(full, env=_env(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return torch.load(out, weights_only=True)


def _max_diff(a: dict, b: dict) -> float:
    return max(float((a[n][k].double() - b[n][k].double()).abs().max()) for n in a for k in a[n])


def test_two_gloo_ranks_match_one_process_with_the_same_global_batch(tmp_path: Path) -> None:
    cfg = parse_config(_params(tmp_path, 4))
    run = AtariRun.open(cfg)  # one committed epoch with a collected replay, no training
    run.begin_epoch()
    run.collect()
    run.commit()
    run.close()
    root = tmp_path / "Breakout_seed0_ci"
    initial = load_state_file(root / "checkpoints" / "state.pt")["agent"]

    single = _train([str(BIN / "python")], root, tmp_path / "single.pt", 4)
    ddp = _train(loopback_only([str(BIN / "torchrun"), "--standalone", "--nproc-per-node=2"]), root,
                 tmp_path / "ddp.pt", 4)
    half = _train([str(BIN / "python")], root, tmp_path / "half.pt", 2)

    for name in single:
        for k, v in single[name].items():
            assert v.shape == ddp[name][k].shape, (name, k)
    moved = max(float((single["denoiser"][k] - initial[f"denoiser.{k}"]).abs().max()) for k in single["denoiser"])
    assert moved > 1e-3  # 3 Adam steps at lr 1e-3 moved the weights by ~3e-3
    for name in single:
        diff = _max_diff({name: single[name]}, {name: ddp[name]})
        assert diff < 2e-5, f"DDP {name} parameters differ from the one-process run by {diff}"
    assert _max_diff(single, half) > 1e-4  # rank 0's half alone trains differently: the test can fail
