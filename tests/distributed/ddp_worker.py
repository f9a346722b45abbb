"""Collects one epoch's steps into a prepared ci run and trains its world model for a few steps, without
committing; run alone
(``python ddp_worker.py``) or under ``torchrun --nproc-per-node=2`` (gloo). Rank 0 saves the trained
``denoiser`` and ``rew_end_model`` parameters to OUT.

The denoiser's sigma and noise are drawn from each process's torch generator, so a DDP run and a
one-process run cannot draw the same noise for the same segment; this worker replaces them with
deterministic functions of the frames, so that the comparison tests what DDP must get right (each rank's
share of the global batch, the gradient average, identical optimiser steps) and nothing else.
Usage: ddp_worker.py RUN_ROOT OUT PARAMS_JSON
"""

import json
import sys

import torch

from diamond_kedro.config import parse_config
from diamond_kedro.models.denoiser import Denoiser
from diamond_kedro.training.run import AtariRun


def fixed_sigma(self, n, device=None):
    return torch.full((n,), 0.8, device=device or self.device)  # the same for every row, whatever the shard


def fixed_noise(x, sigma, sigma_offset_noise):
    sigma = sigma.view(-1, *([1] * (x.dim() - 1)))
    return x + torch.sin(7.0 * x + 1.0) * sigma


def main(root: str, out: str, params_json: str) -> None:
    torch.set_num_threads(1)
    Denoiser.sample_sigma = fixed_sigma
    Denoiser.apply_noise = staticmethod(fixed_noise)
    cfg = parse_config(json.loads(params_json))
    run = AtariRun.open(cfg, root=root)
    run.begin_epoch()
    run.collect()  # rank 0 collects 50 steps; the other rank must train on them too (re-read store)
    run.train_denoiser()
    run.train_rew_end_model()
    if run.dist.is_main:
        assert run.replay_train.num_steps == run.counters.env_steps
        torch.save({name: {k: v.detach().cpu() for k, v in getattr(run.agent, name).state_dict().items()}
                    for name in ("denoiser", "rew_end_model")}, out)
    if not run.dist.is_main:  # rank 1 sees rank 0's collection and counters
        assert run.replay_train.num_steps == run.counters.env_steps and run.counters.env_steps % 50 == 0
    run.close()


if __name__ == "__main__":
    main(*sys.argv[1:])
