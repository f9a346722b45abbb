"""Evaluate every ``evaluate.every`` epochs and at the end of the run (spec §6.3)."""

from diamond_kedro.training.run import AtariRun


def evaluate(run: AtariRun) -> AtariRun:
    run.evaluate()
    return run
