"""Namespaced copies of ``atari_epoch``, one per Atari 100k game (namespace = lower-case game name).

``kedro run --pipelines=atari_games --namespaces=breakout,pong`` runs one epoch of each selected game's run
(each with its own run folder, replay store, checkpoints and MLflow run); without ``--namespaces`` it would
run all 26. The parameters are shared; only ``env.game`` differs: the namespace names the game (each
namespace's datasets, ``pong.replay_train``, ..., are views of that game's run: ``io.run_session``).
"""

from kedro.pipeline import Pipeline, pipeline

from diamond_kedro.envs.atari import ATARI_100K_GAMES
from diamond_kedro.pipelines.atari_epoch.pipeline import create_pipeline as atari_epoch


def create_pipeline(**kwargs) -> Pipeline:
    return sum(
        (
            pipeline(atari_epoch(), namespace=game.lower())
            for game in ATARI_100K_GAMES
        ),
        Pipeline([]),
    )
