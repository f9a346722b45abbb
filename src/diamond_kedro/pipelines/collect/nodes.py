"""Collect real experience: the initial collection in the first epoch, then ``steps_per_epoch`` steps."""

from diamond_kedro.training.run import AtariRun


def collect_experience(run: AtariRun) -> AtariRun:
    """Append this epoch's real-environment steps to the train replay store (spec §1.6, §6.1)."""
    run.collect()
    return run
