"""Train the reward/termination model on replay segments (spec §4.2)."""

from diamond_kedro.training.run import AtariRun


def train_rew_end_model(run: AtariRun) -> AtariRun:
    run.train_rew_end_model()
    return run
