"""Train the actor-critic in imagination, inside the world model (spec §5)."""

from diamond_kedro.training.run import AtariRun


def train_actor_critic(run: AtariRun) -> AtariRun:
    run.train_actor_critic()
    return run
