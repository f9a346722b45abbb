"""Train the diffusion world model (EDM denoiser) on replay segments (spec §2.3)."""

from diamond_kedro.training.run import AtariRun


def train_denoiser(run: AtariRun) -> AtariRun:
    run.train_denoiser()
    return run
