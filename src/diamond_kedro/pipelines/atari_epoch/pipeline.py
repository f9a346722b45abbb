"""One epoch of Algorithm 1 (spec §6.1) as nodes over named datasets::

    actor_critic, collector_state, replay_train -> collect -> replay_train_collected, collector_state_next
    denoiser,      replay_train_collected -> train_denoiser      -> denoiser_trained       (world_model.py)
    rew_end_model, replay_train_collected -> train_rew_end_model -> rew_end_model_trained  (world_model.py)
    actor_critic, denoiser_trained, rew_end_model_trained, replay_train_collected
                                          -> train_actor_critic  -> actor_critic_trained   (imagination)
    actor_critic_trained, denoiser_trained, rew_end_model_trained, replay_test -> evaluate -> replay_test_evaluated
    run_state + every epoch output        -> commit_epoch        -> epoch_metrics

(each phase also writes its ``<phase>_metrics``; ``evaluate`` its ``media``). The catalog's datasets
(:mod:`diamond_kedro.io.run_datasets`) are the run folder's artefacts; the open run (lock, device, emulators)
is a resource of the session (:mod:`diamond_kedro.io.run_session`). The commit makes the epoch's outputs the
next epoch's inputs, atomically: the loop of the paper closes there.
"""

from kedro.pipeline import Pipeline, node, pipeline

from diamond_kedro.io.run_session import ATARI_TAG
from diamond_kedro.pipelines import commit, world_model
from diamond_kedro.pipelines.atari_nodes import collect, evaluate, train_actor_critic

# commit_epoch's inputs: role -> the epoch output
COMMIT_INPUTS = {
    "replay_train": "replay_train_collected",
    "replay_test": "replay_test_evaluated",
    "collector_state": "collector_state_next",
    "denoiser": "denoiser_trained",
    "rew_end_model": "rew_end_model_trained",
    "actor_critic": "actor_critic_trained",
    "train_dataset_metrics": "train_dataset_metrics",
    "denoiser_metrics": "denoiser_metrics",
    "rew_end_model_metrics": "rew_end_model_metrics",
    "actor_critic_metrics": "actor_critic_metrics",
    "evaluate_metrics": "evaluate_metrics",
}


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(collect, inputs=["actor_critic", "collector_state", "replay_train"],
                 outputs=["replay_train_collected", "collector_state_next", "train_dataset_metrics"], name="collect"),
            pipeline(world_model.create_pipeline(("denoiser", "rew_end_model")),
                     inputs={"replay_train": "replay_train_collected"}),
            node(train_actor_critic,
                 inputs=["actor_critic", "denoiser_trained", "rew_end_model_trained", "replay_train_collected"],
                 outputs=["actor_critic_trained", "actor_critic_metrics"], name="train_actor_critic"),
            node(evaluate, inputs=["actor_critic_trained", "denoiser_trained", "rew_end_model_trained", "replay_test"],
                 outputs=["replay_test_evaluated", "evaluate_metrics", "media"], name="evaluate"),
            commit.create_pipeline(COMMIT_INPUTS),
        ],
        tags=[ATARI_TAG],
    )


def phase_pipeline(phase: str) -> Pipeline:
    """A standalone phase (``collect``, ``train_denoiser``, ...): that node and the commit, on the run as it
    stands (the epoch's other outputs read as their committed versions), committed as an epoch."""
    return create_pipeline().only_nodes(phase, "commit_epoch")
