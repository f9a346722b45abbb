"""Namespaced copies of ``atari_epoch``, one per Atari 100k game (namespace = lower-case game name).

``kedro run --pipelines=atari_games --namespaces=breakout,pong`` runs one epoch of each selected game's run
(each with its own run folder, replay store, checkpoints and MLflow run); without ``--namespaces`` it would
run all 26. The parameters are shared; only ``env.game`` differs.
"""

from kedro.pipeline import Pipeline, pipeline

from diamond_kedro.envs.atari import ATARI_100K_GAMES
from diamond_kedro.pipelines.atari_epoch.pipeline import create_pipeline as atari_epoch


def create_pipeline(**kwargs) -> Pipeline:
    return sum(
        (
            pipeline(atari_epoch(game=game), namespace=game.lower(), parameters={"parameters": "parameters"})
            for game in ATARI_100K_GAMES
        ),
        Pipeline([]),
    )
