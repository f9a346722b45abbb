"""One epoch of Algorithm 1 (spec §6.1): collect, train the three components, evaluate, commit."""

from kedro.pipeline import Pipeline

from diamond_kedro.pipelines.collect.pipeline import fragment as collect
from diamond_kedro.pipelines.evaluate.pipeline import fragment as evaluate
from diamond_kedro.pipelines.run_io import chain
from diamond_kedro.pipelines.train_actor_critic.pipeline import fragment as train_actor_critic
from diamond_kedro.pipelines.train_denoiser.pipeline import fragment as train_denoiser
from diamond_kedro.pipelines.train_rew_end_model.pipeline import fragment as train_rew_end_model


def create_pipeline(game: str | None = None, **kwargs) -> Pipeline:
    """``game`` pins ``env.game`` (used by the per-game copies in ``atari_games``)."""
    return chain(
        ("collected", collect()),
        ("denoiser_trained", train_denoiser()),
        ("rew_end_model_trained", train_rew_end_model()),
        ("actor_critic_trained", train_actor_critic()),
        ("evaluated", evaluate()),
        game=game,
    )
